// Package faultproxy is a TCP proxy a test puts between the server and a
// dependency (PostgreSQL, Redis) and cuts and restores, to play the
// dependency restarting in the middle of a request. The shared services of
// the machine are never touched: only the test's own connections drop.
package faultproxy

import (
	"bytes"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// PostgresCommit is how pgx sends COMMIT (a simple-protocol Query message):
// a marker for CutWhenClientSends that matches the commit and nothing else.
var PostgresCommit = []byte("Q\x00\x00\x00\x0bcommit\x00")

// Proxy forwards connections to a target while up. Cut closes every open
// connection and makes new ones fail at once (accepted, then closed: the
// client reads EOF, as from a server going down); Restore lets them through
// again.
type Proxy struct {
	target string
	ln     net.Listener

	mu    sync.Mutex
	up    bool
	pairs map[*pair]struct{}
	// armed: cut everything once a connection's client has sent these
	// markers, in order (after forwarding them).
	armed [][]byte
	// cutArmed is closed when the armed cut happened.
	cutArmed chan struct{}

	refused  atomic.Int64
	accepted atomic.Int64
	wg       sync.WaitGroup
}

// pair is a forwarded connection.
type pair struct {
	client, server net.Conn
	// drain: the client side was cut right after sending; the server side
	// stays open until the server answered, so that what was sent is
	// processed (a COMMIT commits) and only the answer is lost.
	drain atomic.Bool
	// seen counts the armed markers this client has sent (under Proxy.mu).
	seen int
}

// Start listens on a free loopback port and forwards to target (host:port).
// The proxy closes when the test ends.
func Start(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{target: target, ln: ln, up: true, pairs: map[*pair]struct{}{}}
	p.wg.Go(p.accept)
	t.Cleanup(p.Close)
	return p
}

// Addr is the proxy's host:port, to use instead of the target's.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// URL returns raw (a postgres:// or redis:// URL of the target) pointing at
// the proxy instead.
func (p *Proxy) URL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		panic(fmt.Sprintf("faultproxy: %q is not a URL: %v", raw, err))
	}
	u.Host = p.Addr()
	return u.String()
}

// Target returns the host:port of a postgres:// or redis:// URL (the
// default port of its scheme when it names none).
func Target(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		panic(fmt.Sprintf("faultproxy: %q is not a URL: %v", raw, err))
	}
	if u.Port() != "" {
		return u.Host
	}
	port := "5432"
	if strings.HasPrefix(u.Scheme, "redis") {
		port = "6379"
	}
	return net.JoinHostPort(u.Hostname(), port)
}

// Cut drops every connection and refuses new ones until Restore.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cutLocked(nil)
}

// cutLocked drops every pair; the client side only of sending, whose server
// side drains.
func (p *Proxy) cutLocked(sending *pair) {
	p.up = false
	for pr := range p.pairs {
		if pr == sending { // drain was set before its data went out
			_ = pr.client.Close()
			continue
		}
		_ = pr.client.Close()
		_ = pr.server.Close()
	}
	clear(p.pairs)
}

// Restore lets connections through again.
func (p *Proxy) Restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.up = true
}

// Up reports whether the proxy lets connections through.
func (p *Proxy) Up() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.up
}

// CutWhenClientSends arms a cut: the first time one connection's client
// has sent data containing the markers, in order (compared in lower case:
// "set finalized_at", or "rallye_feed" then PostgresCommit for the COMMIT
// of a transaction that notified the feed), the data reaches the server
// and every connection is dropped before the answer comes back; the proxy
// stays cut until Restore. Markers seen before the call do not count. The
// returned channel closes when it happened.
func (p *Proxy) CutWhenClientSends(markers ...[]byte) <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.armed = nil
	for _, m := range markers {
		p.armed = append(p.armed, bytes.ToLower(m))
	}
	for pr := range p.pairs {
		pr.seen = 0
	}
	p.cutArmed = make(chan struct{})
	return p.cutArmed
}

// Refused counts the connections refused while cut.
func (p *Proxy) Refused() int64 { return p.refused.Load() }

// Accepted counts the connections forwarded.
func (p *Proxy) Accepted() int64 { return p.accepted.Load() }

// Close stops the proxy and drops its connections.
func (p *Proxy) Close() {
	_ = p.ln.Close()
	p.Cut()
	p.wg.Wait()
}

func (p *Proxy) accept() {
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return // closed
		}
		p.wg.Go(func() { p.serve(client) })
	}
}

// drainFor bounds how long a drained server side waits for its answer.
const drainFor = 10 * time.Second

func (p *Proxy) serve(client net.Conn) {
	if !p.Up() {
		p.refused.Add(1)
		_ = client.Close()
		return
	}
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		_ = client.Close()
		return
	}
	pr := &pair{client: client, server: server}
	p.mu.Lock()
	if !p.up { // cut while dialling
		p.mu.Unlock()
		p.refused.Add(1)
		_ = client.Close()
		_ = server.Close()
		return
	}
	p.pairs[pr] = struct{}{}
	p.mu.Unlock()
	p.accepted.Add(1)
	fromClient, fromServer := make(chan struct{}), make(chan struct{})
	go func() { p.pipe(pr, server, client, true); close(fromClient) }()
	go func() { p.pipe(pr, client, server, false); close(fromServer) }()
	select {
	case <-fromClient:
		if pr.drain.Load() {
			select { // the server's answer ends its pipe (the client is gone)
			case <-fromServer:
			case <-time.After(drainFor):
			}
		}
	case <-fromServer:
	}
	// One side ended: end the other, as a TCP peer would see it.
	_ = client.Close()
	_ = server.Close()
	<-fromClient
	<-fromServer
	p.mu.Lock()
	delete(p.pairs, pr)
	p.mu.Unlock()
}

// pipe copies src to dst; on the client-to-server direction, an armed cut
// looks for its markers, and when the data completes them, the server's
// answers stop being forwarded before the data is, and every connection is
// cut once it is.
func (p *Proxy) pipe(pr *pair, dst, src net.Conn, fromClient bool) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !fromClient && pr.drain.Load() {
				return // the answer to the marked data is lost
			}
			trip := fromClient && p.completesMarkers(pr, buf[:n])
			if trip {
				pr.drain.Store(true)
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
			if trip {
				p.mu.Lock()
				p.cutLocked(pr)
				close(p.cutArmed)
				p.mu.Unlock()
			}
		}
		if err != nil {
			return
		}
	}
}

// completesMarkers advances the connection through the armed markers and
// reports whether data completes them (disarming the proxy).
func (p *Proxy) completesMarkers(pr *pair, data []byte) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.armed == nil {
		return false
	}
	data = bytes.ToLower(data)
	for pr.seen < len(p.armed) {
		i := bytes.Index(data, p.armed[pr.seen])
		if i < 0 {
			break
		}
		data = data[i+len(p.armed[pr.seen]):]
		pr.seen++
	}
	if pr.seen < len(p.armed) {
		return false
	}
	p.armed = nil
	return true
}
