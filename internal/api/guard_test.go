package api_test

import (
	"context"
	"net/http"
	"slices"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/emptypb"

	_ "github.com/rallyehq/rallye/gen/rallye/v1" // registers the services' descriptors
	"github.com/rallyehq/rallye/internal/api"
	"github.com/rallyehq/rallye/internal/auth"
	"github.com/rallyehq/rallye/internal/rallye"
	"github.com/rallyehq/rallye/internal/testutil/testserver"
)

// procedures lists every RPC of the rallye.v1 package, from the generated
// descriptors: a new RPC shows up here without anyone listing it.
func procedures(t *testing.T) []protoreflect.MethodDescriptor {
	out := allProcedures()
	if len(out) == 0 {
		t.Fatal("no rallye.v1 procedure registered")
	}
	return out
}

func allProcedures() []protoreflect.MethodDescriptor {
	var out []protoreflect.MethodDescriptor
	protoregistry.GlobalFiles.RangeFilesByPackage("rallye.v1", func(fd protoreflect.FileDescriptor) bool {
		for i := range fd.Services().Len() {
			svc := fd.Services().Get(i)
			for j := range svc.Methods().Len() {
				out = append(out, svc.Methods().Get(j))
			}
		}
		return true
	})
	return out
}

func procedureName(m protoreflect.MethodDescriptor) string {
	return "/" + string(m.Parent().FullName()) + "/" + string(m.Name())
}

// call invokes any procedure with an empty request (an empty protobuf
// message decodes as any request type) and returns the status code.
func call(ctx context.Context, baseURL string, m protoreflect.MethodDescriptor, token string) connect.Code {
	var opts []connect.ClientOption
	if token != "" {
		opts = append(opts, testserver.Bearer(token), connect.WithInterceptors(streamBearer(token)))
	}
	client := connect.NewClient[emptypb.Empty, emptypb.Empty](http.DefaultClient, baseURL+procedureName(m), opts...)
	var err error
	switch {
	case m.IsStreamingServer() && !m.IsStreamingClient():
		var stream *connect.ServerStreamForClient[emptypb.Empty]
		stream, err = client.CallServerStream(ctx, connect.NewRequest(&emptypb.Empty{}))
		if err == nil {
			stream.Receive()
			err = stream.Err()
			_ = stream.Close()
		}
	default:
		_, err = client.CallUnary(ctx, connect.NewRequest(&emptypb.Empty{}))
	}
	if err == nil {
		return 0
	}
	return connect.CodeOf(err)
}

// streamBearer adds the token to streaming calls too.
type streamBearer string

func (s streamBearer) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc { return next }
func (s streamBearer) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		conn := next(ctx, spec)
		conn.RequestHeader().Set("Authorization", "Bearer "+string(s))
		return conn
	}
}
func (s streamBearer) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

func TestEveryProcedureHasARule(t *testing.T) {
	known := map[string]bool{}
	for _, m := range procedures(t) {
		name := procedureName(m)
		known[name] = true
		if _, ok := api.Rules[name]; !ok {
			t.Errorf("%s has no authorization rule in internal/api/rules.go", name)
		}
	}
	for name := range api.Rules {
		if !known[name] {
			t.Errorf("rule for %s, which is not a procedure", name)
		}
	}
}

// TestEveryProcedureIsGuarded calls every procedure without credentials and
// with each role outside its rule.
func TestEveryProcedureIsGuarded(t *testing.T) {
	srv := testserver.Start(t)
	ctx := context.Background()
	company := testserver.NewCompany(t, srv.App.Org)
	tokens := map[rallye.Role]string{rallye.RoleAdmin: company.AdminToken}
	for _, role := range []rallye.Role{rallye.RoleRep, rallye.RoleManager, rallye.RoleHR} {
		_, tokens[role] = testserver.NewPerson(t, srv.App.Org, company, []rallye.Role{role})
	}
	_, secret, err := srv.App.APIKeys.Create(ctx, company.Operator, auth.CreateAPIKeyRequest{Name: "crm"})
	if err != nil {
		t.Fatal(err)
	}
	tokens[rallye.RoleIntegration] = secret

	for _, m := range procedures(t) {
		name := procedureName(m)
		t.Run(name, func(t *testing.T) {
			if code := call(ctx, srv.URL, m, ""); code != connect.CodeUnauthenticated {
				t.Errorf("without credentials: %v, want unauthenticated", code)
			}
			if code := call(ctx, srv.URL, m, "not-a-token"); code != connect.CodeUnauthenticated {
				t.Errorf("with a bad token: %v, want unauthenticated", code)
			}
			for role, token := range tokens {
				code := call(ctx, srv.URL, m, token)
				allowed := slices.Contains(api.Rules[name], role)
				if !allowed && code != connect.CodePermissionDenied {
					t.Errorf("as %s (not in the rule): %v, want permission_denied", role, code)
				}
				if allowed && (code == connect.CodePermissionDenied || code == connect.CodeUnauthenticated) {
					t.Errorf("as %s (in the rule): %v", role, code)
				}
			}
		})
	}
}
