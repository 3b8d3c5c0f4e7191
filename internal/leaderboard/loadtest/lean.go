package loadtest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	rallyev1 "github.com/rallyehq/rallye/gen/rallye/v1"
	"github.com/rallyehq/rallye/gen/rallye/v1/rallyev1connect"
)

// leanReads calls GetRanking over the Connect protocol (binary protobuf,
// HTTP/1.1 keep-alive, one connection per client) the way a load tool
// such as wrk does: the request is encoded once, each response is parsed
// and decoded into a reused message and checked. The load generator shares
// the server's two cores, which phones in production do not: a lean client
// leaves the server more of them.
func (r *run) leanReads(ctx context.Context, d time.Duration, baseURL string) loadResult {
	return r.parallel(ctx, len(r.tokens), d, func(i int) func() error {
		c, err := r.leanConn(baseURL, i)
		if err != nil {
			return func() error { return err }
		}
		return func() error { return c.call(ctx) }
	})
}

// recordRanking is one reader's ranking, as the server answers it.
func (r *run) recordRanking(ctx context.Context) (*rallyev1.GetRankingResponse, error) {
	c, err := r.leanConn(r.url, 0)
	if err != nil {
		return nil, err
	}
	defer c.close()
	if err := c.call(ctx); err != nil {
		return nil, err
	}
	return &c.res, nil
}

// leanConn prepares reader i's request to baseURL.
func (r *run) leanConn(baseURL string, i int) (*leanConn, error) {
	body, err := proto.Marshal(&rallyev1.GetRankingRequest{BoardId: r.board.ID.String(), PageSize: 10, Around: int32(r.c.Around)})
	if err != nil {
		return nil, err
	}
	host := strings.TrimPrefix(baseURL, "http://")
	var req bytes.Buffer
	fmt.Fprintf(&req, "POST %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: application/proto\r\nConnect-Protocol-Version: 1\r\nContent-Length: %d\r\n\r\n",
		rallyev1connect.LeaderboardServiceGetRankingProcedure, host, r.tokens[i], len(body))
	req.Write(body)
	return &leanConn{addr: host, req: req.Bytes()}, nil
}

// leanConn is one client's keep-alive connection.
type leanConn struct {
	addr string
	req  []byte
	conn net.Conn
	rd   *bufio.Reader
	buf  []byte
	res  rallyev1.GetRankingResponse
}

func (c *leanConn) call(ctx context.Context) error {
	if c.conn == nil {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", c.addr)
		if err != nil {
			return err
		}
		c.conn, c.rd = conn, bufio.NewReaderSize(conn, 16<<10)
	}
	err := c.roundTrip()
	if err != nil {
		c.conn.Close()
		c.conn = nil
	}
	return err
}

func (c *leanConn) close() {
	if c.conn != nil {
		c.conn.Close()
	}
}

func (c *leanConn) roundTrip() error {
	if _, err := c.conn.Write(c.req); err != nil {
		return err
	}
	res, err := http.ReadResponse(c.rd, nil)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.ContentLength < 0 || res.ContentLength > 1<<20 {
		return fmt.Errorf("response length %d", res.ContentLength)
	}
	if cap(c.buf) < int(res.ContentLength) {
		c.buf = make([]byte, res.ContentLength)
	}
	c.buf = c.buf[:res.ContentLength]
	if _, err := io.ReadFull(res.Body, c.buf); err != nil {
		return err
	}
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("status %s: %s", res.Status, c.buf)
	}
	if err := proto.Unmarshal(c.buf, &c.res); err != nil {
		return err
	}
	if n := len(c.res.GetRanking().GetEntries()); n != 10 || c.res.GetRanking().GetPlacement() == nil {
		return fmt.Errorf("incomplete ranking: %d entries", n)
	}
	return nil
}
