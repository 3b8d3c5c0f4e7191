package api

import (
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"connectrpc.com/connect"

	"github.com/rallyehq/rallye/internal/config"
	"github.com/rallyehq/rallye/internal/rallye"
)

// The edge of the API: what happens to a request before its message is read.
// Credentials and roles are checked from the headers alone, and the body is
// bounded on the wire and after decompression, so that an anonymous caller
// cannot make the server read anything and an authenticated one cannot make
// it hold more than one limit's worth.

// anonymousMaxBytes bounds the messages of the procedures open without
// credentials (health and reflection), which are a few hundred bytes.
const anonymousMaxBytes = 64 << 10

// envelopeSlack is what a body may carry beyond its message: the 5-byte
// envelope of gRPC and gRPC-Web, and gzip's header and trailer when a
// message does not compress.
const envelopeSlack = 4 << 10

// requestLimit returns the limit a Deps asks for, or the default.
func requestLimit(n int64) int64 {
	if n <= 0 {
		return config.DefaultMaxRequestBytes
	}
	return n
}

// gate authenticates a call and checks the rules table once the headers are
// in, before connect reads or decompresses a byte of the body (a
// connect.RequestGateFunc, which answers in the protocol of the request:
// Connect, gRPC or gRPC-Web). An admitted call whose declared length is over
// the limit is refused too, with words saying what to do. A refusal is
// logged and counted like any other answer.
func (g *guard) gate(obs *observer, limit int64) connect.RequestGateFunc {
	return func(ctx context.Context, spec connect.Spec, _ connect.Peer, header http.Header) (context.Context, error) {
		start := time.Now()
		ctx = obs.begin(ctx, spec.Procedure)
		admitted, err := g.admit(ctx, spec.Procedure, header.Get("Authorization"))
		if err == nil && declaredLength(header) > limit+envelopeSlack {
			err = connect.NewError(connect.CodeResourceExhausted, errors.New(tooLarge(limit)))
		}
		if err != nil {
			return nil, obs.end(ctx, spec.Procedure, start, err)
		}
		return admitted, nil
	}
}

// declaredLength is the Content-Length a client announced, or -1. A body
// declared longer than the limit plus the envelope cannot hold a message
// within the limit: compression makes a message shorter, or at worst
// longer by gzip's few bytes.
func declaredLength(header http.Header) int64 {
	n, err := strconv.ParseInt(header.Get("Content-Length"), 10, 64)
	if err != nil {
		return -1
	}
	return n
}

// tooLarge is the answer to a request over the limit.
func tooLarge(limit int64) string {
	return fmt.Sprintf("the request is larger than %s (RALLYE_MAX_REQUEST_BYTES): send fewer items per call", byteSize(limit))
}

// limitBodies bounds the bodies of the procedures (one request message each:
// no procedure streams from the client) with http.MaxBytesReader: connect
// then stops reading at the limit when it drains an oversized body, and the
// server closes the connection instead of reading the rest.
func limitBodies(next http.Handler, procedures map[string][]rallye.Role, limit int64) http.Handler {
	tooLargeErr := errors.New(tooLarge(limit))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := procedures[r.URL.Path]; ok && r.Body != nil {
			r.Body = limitedBody{http.MaxBytesReader(w, r.Body, limit+envelopeSlack), tooLargeErr}
		}
		next.ServeHTTP(w, r)
	})
}

// limitedBody words http.MaxBytesReader's error for the client.
type limitedBody struct {
	io.ReadCloser
	tooLarge error
}

func (b limitedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	var overLimit *http.MaxBytesError
	if errors.As(err, &overLimit) {
		err = b.tooLarge
	}
	return n, err
}

// boundedGzip is connect's gzip decompressor, stopped after limit+1 bytes.
// Connect reads limit+1 decompressed bytes to see that a message is too
// large, then drains the decompressor to report the size: without the
// bound, a 256 KB gzip bomb would still cost inflating its 256 MB.
type boundedGzip struct {
	gz       gzip.Reader
	limit    int64
	left     int64
	tooLarge error
}

func (b *boundedGzip) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, b.tooLarge
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.gz.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *boundedGzip) Reset(r io.Reader) error {
	b.left = b.limit + 1
	return b.gz.Reset(r)
}

func (b *boundedGzip) Close() error { return b.gz.Close() }

// readLimits are the handler options that bound what one call may make the
// server read: limit bytes per message, after decompression.
func readLimits(limit int64) connect.HandlerOption {
	return connect.WithHandlerOptions(
		connect.WithReadMaxBytes(int(limit)),
		connect.WithCompression("gzip",
			func() connect.Decompressor { return &boundedGzip{limit: limit, tooLarge: errors.New(tooLarge(limit))} },
			func() connect.Compressor { return gzip.NewWriter(io.Discard) },
		),
	)
}

// byteSize writes n in the largest binary unit that divides it.
func byteSize(n int64) string {
	switch {
	case n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}
