package api_test

import (
	"context"
	"flag"
	"fmt"
	"os"
	"slices"
	"sync"
	"testing"

	"connectrpc.com/connect"
)

// Every RPC has a test calling it with another company's token on the first
// company's objects (NotFound, or nothing of theirs listed). The tests of
// each area mark that token with foreign; the clients built with it record
// what they call; TestMain then checks, after a full run, that no procedure
// was left out, so a new RPC cannot ship without that test.
var (
	foreignTokens sync.Map // token -> true
	foreignCalls  sync.Map // procedure -> true
)

// foreign marks token as another company's, and returns it.
func foreign(token string) string {
	foreignTokens.Store(token, true)
	return token
}

// recordForeign is the client interceptor of every test client: it notes
// the procedures called with a foreign token.
func recordForeign(token string) connect.ClientOption {
	note := func(procedure string) {
		if _, ok := foreignTokens.Load(token); ok {
			foreignCalls.Store(procedure, true)
		}
	}
	return connect.WithInterceptors(foreignRecorder{note: note})
}

type foreignRecorder struct{ note func(string) }

func (f foreignRecorder) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		f.note(req.Spec().Procedure)
		return next(ctx, req)
	}
}

func (f foreignRecorder) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		f.note(spec.Procedure)
		return next(ctx, spec)
	}
}

func (f foreignRecorder) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	if code == 0 && flag.Lookup("test.run").Value.String() == "" && !testing.Short() {
		if missing := missingForeignCalls(); len(missing) > 0 {
			fmt.Fprintf(os.Stderr, "FAIL: no test calls these procedures with another company's token: %v\n", missing)
			code = 1
		}
	}
	os.Exit(code)
}

func missingForeignCalls() []string {
	var missing []string
	for _, m := range allProcedures() {
		if _, ok := foreignCalls.Load(procedureName(m)); !ok {
			missing = append(missing, procedureName(m))
		}
	}
	slices.Sort(missing)
	return missing
}
