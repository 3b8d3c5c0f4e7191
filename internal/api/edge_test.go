package api_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"connectrpc.com/connect"

	rallyev1 "github.com/rallyehq/rallye/gen/rallye/v1"
	"github.com/rallyehq/rallye/gen/rallye/v1/rallyev1connect"
	"github.com/rallyehq/rallye/internal/api"
	"github.com/rallyehq/rallye/internal/config"
	"github.com/rallyehq/rallye/internal/testutil/testserver"
)

// zeros reads as n zero bytes without holding them.
type zeros struct{ n int64 }

func (z *zeros) Read(p []byte) (int, error) {
	if z.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > z.n {
		p = p[:z.n]
	}
	clear(p)
	z.n -= int64(len(p))
	return len(p), nil
}

// gzipBomb returns a gzip body inflating to n zero bytes (256 MB in about
// 250 KB): one member of 1 MiB of zeros, repeated (gzip readers read every
// member of a stream, connect's too), which is quick to make even under the
// race detector.
func gzipBomb(t *testing.T, n int64) []byte {
	t.Helper()
	const chunk = 1 << 20
	var member bytes.Buffer
	zw, err := gzip.NewWriterLevel(&member, gzip.BestCompression)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(zw, &zeros{n: chunk}); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return bytes.Repeat(member.Bytes(), int(n/chunk))
}

// rawCall is one hostile request written by hand, as an attacker would: the
// body is streamed, never held by the test.
type rawCall struct {
	protocol  string // connect, grpc, grpcweb
	token     string
	gzipped   bool
	body      func() io.Reader // the message as sent (compressed or not)
	bodyBytes int64
}

// send posts the call and returns the status code and message the server
// answered, read from where each protocol puts them.
func (c rawCall) send(t *testing.T, client *http.Client, baseURL, procedure string) (code, message string) {
	t.Helper()
	body := c.body()
	length := c.bodyBytes
	if c.protocol != "connect" {
		prefix := make([]byte, 5)
		if c.gzipped {
			prefix[0] = 1
		}
		binary.BigEndian.PutUint32(prefix[1:], uint32(c.bodyBytes))
		body = io.MultiReader(bytes.NewReader(prefix), body)
		length += 5
	}
	req, err := http.NewRequest(http.MethodPost, baseURL+procedure, body)
	if err != nil {
		t.Fatal(err)
	}
	// Connect clients declare the length of a unary call; gRPC ones
	// stream, so the server learns the size from the envelope.
	if c.protocol == "connect" {
		req.ContentLength = length
	}
	switch c.protocol {
	case "connect":
		req.Header.Set("Content-Type", "application/proto")
		req.Header.Set("Connect-Protocol-Version", "1")
		if c.gzipped {
			req.Header.Set("Content-Encoding", "gzip")
		}
	case "grpc":
		req.Header.Set("Content-Type", "application/grpc+proto")
		req.Header.Set("Te", "trailers")
	case "grpcweb":
		req.Header.Set("Content-Type", "application/grpc-web+proto")
		req.Header.Set("X-Grpc-Web", "1")
	}
	if c.gzipped && c.protocol != "connect" {
		req.Header.Set("Grpc-Encoding", "gzip")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	res, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s: %v", c.protocol, err)
	}
	defer res.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if err != nil {
		t.Fatalf("%s: read the answer: %v", c.protocol, err)
	}
	switch c.protocol {
	case "connect":
		if res.StatusCode == http.StatusOK {
			return "ok", ""
		}
		var e struct{ Code, Message string }
		if err := json.Unmarshal(answer, &e); err != nil {
			t.Fatalf("connect answered %d %q", res.StatusCode, answer)
		}
		return e.Code, e.Message
	case "grpc":
		return grpcStatus(t, res.Header, res.Trailer)
	default:
		// gRPC-Web: trailers-only in the headers, or a trailer frame.
		if res.Header.Get("Grpc-Status") != "" {
			return grpcStatus(t, res.Header, nil)
		}
		for len(answer) >= 5 {
			n := binary.BigEndian.Uint32(answer[1:5])
			frame := answer[5 : 5+n]
			if answer[0]&0x80 != 0 {
				hdr, err := readMIME(frame)
				if err != nil {
					t.Fatal(err)
				}
				return grpcStatus(t, hdr, nil)
			}
			answer = answer[5+n:]
		}
		t.Fatalf("grpc-web answer without a status: %q", answer)
	}
	return "", ""
}

func readMIME(b []byte) (http.Header, error) {
	h := http.Header{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\r\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		h.Add(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	return h, nil
}

func grpcStatus(t *testing.T, headers ...http.Header) (code, message string) {
	t.Helper()
	for _, h := range headers {
		if s := h.Get("Grpc-Status"); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil {
				t.Fatalf("grpc-status %q", s)
			}
			msg, _ := url.PathUnescape(h.Get("Grpc-Message"))
			if n == 0 {
				return "ok", msg
			}
			return connect.Code(n).String(), msg
		}
	}
	t.Fatal("no grpc-status")
	return "", ""
}

// allocatedDuring returns the bytes the process allocated while f ran: an
// upper bound of what f made the heap grow by (the client side of the test
// included), whatever the garbage collector did meanwhile.
func allocatedDuring(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// TestHostileBodiesAreBounded sends what took the server from 95 MB to
// 1.37 GB: a 256 KB gzip body inflating to 256 MB, and a 64 MB plain body,
// over Connect, gRPC and gRPC-Web, with and without credentials. Without
// credentials nothing of the body is read (unauthenticated, from the
// headers); with them, nothing beyond the limit is held (resource
// exhausted). The process's allocations during each call are the proof.
//
// It does not run in parallel: the allocation counters are the process's.
func TestHostileBodiesAreBounded(t *testing.T) {
	srv := testserver.Start(t)
	acme := testserver.NewCompany(t, srv.App.Org)
	const bombSize, plainSize = 256 << 20, 64 << 20
	bomb := gzipBomb(t, bombSize)
	limit := uint64(config.DefaultMaxRequestBytes)
	growth := uint64(6)
	if raceEnabled {
		growth *= 2
	}
	t.Logf("gzip bomb: %d KB inflating to %d MB; limit %d MiB", len(bomb)>>10, bombSize>>20, limit>>20)

	bodies := []struct {
		name    string
		gzipped bool
		body    func() io.Reader
		size    int64
	}{
		{"GzipBomb", true, func() io.Reader { return bytes.NewReader(bomb) }, int64(len(bomb))},
		{"Oversized", false, func() io.Reader { return &zeros{n: plainSize} }, plainSize},
	}
	credentials := []struct {
		name     string
		token    string
		wantCode string
		// maxAlloc bounds what one call may make the process allocate:
		// without credentials, the headers and what HTTP/2 flow control
		// lets the client push before the refusal (1 MiB); with them, the limit
		// read into a buffer that doubles as it grows (4 MiB fit in
		// 512 B + 1 KiB + ... + 8 MiB: 4 times the limit in all, twice
		// that under the race detector).
		maxAlloc uint64
	}{
		{"Anonymous", "", connect.CodeUnauthenticated.String(), 6 << 20},
		{"Authenticated", acme.AdminToken, connect.CodeResourceExhausted.String(), growth * limit},
	}
	for _, p := range testserver.Protocols() {
		for _, cred := range credentials {
			for _, b := range bodies {
				t.Run(p.Name+"/"+cred.name+"/"+b.name, func(t *testing.T) {
					call := rawCall{protocol: p.Name, token: cred.token, gzipped: b.gzipped, body: b.body, bodyBytes: b.size}
					var code, msg string
					alloc := allocatedDuring(func() {
						code, msg = call.send(t, p.Client, srv.URL, rallyev1connect.EventServiceIngestEventsProcedure)
					})
					t.Logf("%s: %q; allocated %.1f MiB", code, msg, float64(alloc)/(1<<20))
					if code != cred.wantCode {
						t.Fatalf("answered %s (%q), want %s", code, msg, cred.wantCode)
					}
					if msg == "" {
						t.Fatal("the answer carries no message")
					}
					if alloc > cred.maxAlloc {
						t.Fatalf("the call made the process allocate %.1f MiB, more than %.1f MiB",
							float64(alloc)/(1<<20), float64(cred.maxAlloc)/(1<<20))
					}
				})
			}
		}
	}
}

// TestFullBatchFitsTheLimit sends the largest legitimate request, 1,000
// events with every field at its maximum length, in JSON (gzipped) and in
// binary over each protocol: the limit lets it through.
func TestFullBatchFitsTheLimit(t *testing.T) {
	srv := testserver.Start(t)
	acme := testserver.NewCompany(t, srv.App.Org)
	batch := &rallyev1.IngestEventsRequest{}
	for range 1000 {
		batch.Events = append(batch.Events, api.FullEvent(5))
	}
	for _, p := range testserver.Protocols() {
		for _, enc := range []struct {
			name string
			opts []connect.ClientOption
		}{{"json-gzip", []connect.ClientOption{connect.WithProtoJSON(), connect.WithSendGzip()}}, {"proto", nil}} {
			t.Run(p.Name+"/"+enc.name, func(t *testing.T) {
				client := rallyev1connect.NewEventServiceClient(p.Client, srv.URL,
					append(append(enc.opts, p.Opts...), testserver.Bearer(acme.AdminToken))...)
				res, err := client.IngestEvents(context.Background(), batch)
				if err != nil {
					t.Fatal(err)
				}
				// The events name their rep twice: each is refused, and
				// nothing is stored.
				if len(res.Rejected) != len(batch.Events) {
					t.Fatalf("response %d accepted, %d rejected", res.Accepted, len(res.Rejected))
				}
			})
		}
	}
}
