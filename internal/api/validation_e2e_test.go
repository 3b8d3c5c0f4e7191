package api_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"buf.build/gen/go/bufbuild/protovalidate/protocolbuffers/go/buf/validate"
	"buf.build/go/protovalidate"
	"connectrpc.com/connect"
	"github.com/jackc/pgx/v5"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/timestamppb"

	rallyev1 "github.com/rallyehq/rallye/gen/rallye/v1"
	"github.com/rallyehq/rallye/gen/rallye/v1/rallyev1connect"
	"github.com/rallyehq/rallye/internal/org"
	"github.com/rallyehq/rallye/internal/testutil/testserver"
)

// rawBody is a request or reply as bytes, so that a test can send what no
// generated client would (unknown enum names, unknown fields) or build any
// procedure's request by reflection.
type rawBody struct{ data []byte }

// rawCodec passes rawBody through under a codec name.
type rawCodec string

func (c rawCodec) Name() string { return string(c) }
func (c rawCodec) Marshal(v any) ([]byte, error) {
	return v.(*rawBody).data, nil
}
func (c rawCodec) Unmarshal(data []byte, v any) error {
	v.(*rawBody).data = append([]byte(nil), data...)
	return nil
}

// callRaw sends body to procedure with codec over protocol p.
func callRaw(ctx context.Context, srv *testserver.Server, p testserver.Protocol, token, codec, procedure string, streaming bool, body []byte) error {
	opts := append([]connect.ClientOption{connect.WithCodec(rawCodec(codec))}, p.Opts...)
	if token != "" {
		opts = append(opts, testserver.Bearer(token), connect.WithInterceptors(streamBearer(token)))
	}
	client := connect.NewClient[rawBody, rawBody](p.Client, srv.URL+procedure, opts...)
	if !streaming {
		_, err := client.CallUnary(ctx, connect.NewRequest(&rawBody{data: body}))
		return err
	}
	stream, err := client.CallServerStream(ctx, connect.NewRequest(&rawBody{data: body}))
	if err != nil {
		return err
	}
	defer stream.Close()
	stream.Receive()
	return stream.Err()
}

// fieldViolation returns the description the BadRequest detail of err
// gives for path.
func fieldViolation(err error, path string) (string, bool) {
	var ce *connect.Error
	if !errors.As(err, &ce) {
		return "", false
	}
	for _, d := range ce.Details() {
		v, derr := d.Value()
		if derr != nil {
			continue
		}
		if br, ok := v.(*errdetails.BadRequest); ok {
			for _, fv := range br.FieldViolations {
				if fv.Field == path {
					return fv.Description, true
				}
			}
		}
	}
	return "", false
}

// TestStrictJSON: a misspelt enum name or field in JSON is invalid_argument
// naming the field, over the three protocols, instead of a silently
// different query.
func TestStrictJSON(t *testing.T) {
	srv := testserver.Start(t)
	acme := testserver.NewCompany(t, srv.App.Org)
	ctx := context.Background()
	tests := []struct {
		name      string
		body      string
		field     string
		wantWords []string
	}{
		{"UnknownEnumName", `{"period":"PERIOD_BOGUS"}`, "period", []string{"PERIOD_BOGUS", "PERIOD_WEEK", "PERIOD_MONTH", "PERIOD_QUARTER", "PERIOD_ALL_TIME"}},
		{"UnknownField", `{"perod":"PERIOD_WEEK"}`, "perod", []string{"unknown field"}},
		{"UnknownNestedEnumName", `{"user":{"display_name":"A","email":"a@b.test","locale":"LOCALE_DE","roles":["ROLE_REP"]}}`,
			"locale", []string{"LOCALE_DE", "LOCALE_FR", "LOCALE_EN"}},
	}
	procedures := map[string]string{
		"UnknownEnumName":       rallyev1connect.LeaderboardServiceListBoardsProcedure,
		"UnknownField":          rallyev1connect.LeaderboardServiceListBoardsProcedure,
		"UnknownNestedEnumName": rallyev1connect.OrganizationServiceCreateUserProcedure,
	}
	for _, p := range testserver.Protocols() {
		for _, tt := range tests {
			t.Run(p.Name+"/"+tt.name, func(t *testing.T) {
				err := callRaw(ctx, srv, p, acme.AdminToken, "json", procedures[tt.name], false, []byte(tt.body))
				wantField(t, err, tt.field)
				for _, w := range tt.wantWords {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("%v does not say %q", err, w)
					}
				}
			})
		}
	}
	t.Run("KnownNamesStillWork", func(t *testing.T) {
		err := callRaw(ctx, srv, testserver.Protocols()[0], acme.AdminToken, "json",
			rallyev1connect.LeaderboardServiceListBoardsProcedure, false, []byte(`{"period":"PERIOD_WEEK","page_size":5}`))
		if err != nil {
			t.Fatal(err)
		}
	})
}

// enumRule is an enum field that protovalidate rules make required or
// restrict to defined values, found by walking a request type.
type enumRule struct {
	path []protoreflect.FieldDescriptor
	// value breaks the rule: 0 for a required enum (not_in contains 0),
	// a defined value outside an in list, or an undefined number.
	value protoreflect.EnumNumber
	// in and notIn are the field's lists, which say what it accepts.
	in, notIn []int32
}

// accepts says whether the rules accept n (0 means unset, never a choice).
func (r enumRule) accepts(n protoreflect.EnumNumber) bool {
	return n != 0 && (len(r.in) == 0 || slices.Contains(r.in, int32(n))) && !slices.Contains(r.notIn, int32(n))
}

func (r enumRule) enum() protoreflect.EnumDescriptor { return r.path[len(r.path)-1].Enum() }

func enumRules(md protoreflect.MessageDescriptor, prefix []protoreflect.FieldDescriptor, seen map[protoreflect.FullName]bool, out *[]enumRule) {
	if seen[md.FullName()] {
		return
	}
	seen[md.FullName()] = true
	defer delete(seen, md.FullName())
	fields := md.Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		rules, err := protovalidate.ResolveFieldRules(fd)
		if err != nil {
			continue
		}
		// Fields the interceptor skips are validated by their handler
		// against a mask; their types are walked from other requests.
		// (rows of a batch too: they are rejected one by one in the reply).
		if rules.GetIgnore() == validate.Ignore_IGNORE_ALWAYS || rules.GetRepeated().GetItems().GetIgnore() == validate.Ignore_IGNORE_ALWAYS || fd.IsMap() {
			continue
		}
		path := append(append([]protoreflect.FieldDescriptor{}, prefix...), fd)
		if fd.Enum() != nil {
			er := rules.GetEnum()
			if fd.IsList() {
				er = rules.GetRepeated().GetItems().GetEnum()
			}
			rule := enumRule{path: path, in: er.GetIn(), notIn: er.GetNotIn()}
			switch {
			case slices.Contains(er.GetNotIn(), 0):
				*out = append(*out, rule)
			case len(er.GetIn()) > 0:
				values := fd.Enum().Values()
				for i := range values.Len() {
					if n := values.Get(i).Number(); n != 0 && !slices.Contains(er.GetIn(), int32(n)) {
						rule.value = n
						*out = append(*out, rule)
						break
					}
				}
			case er.GetDefinedOnly():
				rule.value = 99
				*out = append(*out, rule)
			}
		}
		if fd.Message() != nil && !strings.HasPrefix(string(fd.Message().FullName()), "google.") {
			enumRules(fd.Message(), path, seen, out)
		}
	}
}

// build makes a request of type md whose field at path holds v (0 for a
// required enum, an undefined number otherwise), and the path as
// protovalidate writes it.
func (r enumRule) build(md protoreflect.MessageDescriptor) ([]byte, string, error) {
	mt, err := protoregistry.GlobalTypes.FindMessageByName(md.FullName())
	if err != nil {
		return nil, "", err
	}
	root := mt.New()
	m := root
	var names []string
	for i, fd := range r.path {
		name := string(fd.Name())
		last := i == len(r.path)-1
		switch {
		case last && fd.IsList():
			m.Mutable(fd).List().Append(protoreflect.ValueOfEnum(r.value))
			name += "[0]"
		case last:
			// 0 is the default: a required enum left unset.
			m.Set(fd, protoreflect.ValueOfEnum(r.value))
		case fd.IsList():
			list := m.Mutable(fd).List()
			el := list.NewElement()
			list.Append(el)
			m = el.Message()
			name += "[0]"
		default:
			m = m.Mutable(fd).Message()
		}
		names = append(names, name)
	}
	b, err := proto.Marshal(root.Interface())
	return b, strings.Join(names, "."), err
}

// TestEveryRequiredEnumSaysSoAndListsItsValues walks every enum field of
// every request with a not_in [0] or defined_only rule, sends a request
// breaking it through the API, and checks the answer: invalid_argument, the
// field named, "is required" (or the number refused), and every value the
// field accepts listed.
func TestEveryRequiredEnumSaysSoAndListsItsValues(t *testing.T) {
	srv := testserver.Start(t)
	acme := testserver.NewCompany(t, srv.App.Org)
	ctx := context.Background()
	p := testserver.Protocols()[0]
	checked := 0
	for _, m := range procedures(t) {
		var rules []enumRule
		enumRules(m.Input(), nil, map[protoreflect.FullName]bool{}, &rules)
		for _, r := range rules {
			body, path, err := r.build(m.Input())
			if err != nil {
				t.Fatal(err)
			}
			t.Run(procedureName(m)+"/"+path, func(t *testing.T) {
				err := callRaw(ctx, srv, p, acme.AdminToken, "proto", procedureName(m), m.IsStreamingServer(), body)
				wantField(t, err, path)
				got, ok := fieldViolation(err, path)
				if !ok {
					t.Fatalf("no BadRequest entry for %s in %v", path, err)
				}
				var want string
				switch v := r.enum().Values().ByNumber(r.value); {
				case r.value == 0:
					want = "is required; use one of "
				case v == nil:
					want = fmt.Sprintf("%d is not a value of %s; use one of ", r.value, r.enum().Name())
				default:
					want = fmt.Sprintf("%s is not allowed here; use one of ", v.Name())
				}
				if !strings.HasPrefix(got, want) {
					t.Fatalf("%s: %q does not start with %q", path, got, want)
				}
				// The list is the values a client may send: none but
				// those, all of those.
				listed := strings.Split(strings.TrimPrefix(got, want), ", ")
				values := r.enum().Values()
				for i := range values.Len() {
					v := values.Get(i)
					if slices.Contains(listed, string(v.Name())) != r.accepts(v.Number()) {
						t.Errorf("%s: %q lists %s wrongly", path, got, v.Name())
					}
				}
			})
			checked++
		}
	}
	if checked < 20 {
		t.Fatalf("only %d enum rules found: the walk is broken", checked)
	}
	t.Logf("%d enum rules checked", checked)
}

// TestListMyChallengesDefaultsToActive: an empty request is the home screen.
func TestListMyChallengesDefaultsToActive(t *testing.T) {
	srv := testserver.Start(t)
	acme := testserver.NewCompany(t, srv.App.Org)
	c := clientsFor(srv, testserver.Protocols()[0], acme.AdminToken)
	ctx := context.Background()
	empty, err := c.challenges.ListMyChallenges(ctx, &rallyev1.ListMyChallengesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	active, err := c.challenges.ListMyChallenges(ctx, &rallyev1.ListMyChallengesRequest{Window: rallyev1.ChallengeWindow_CHALLENGE_WINDOW_ACTIVE})
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(empty, active) {
		t.Fatalf("ListMyChallenges {} = %v, want the active window %v", empty, active)
	}
}

// TestFarTimestampsAreInvalid: GetLevel1/2/3 at the end of year 9999 (level
// 3 is open to reps) answered internal while encoding the reply; the window
// of the protos refuses it, naming the field.
func TestFarTimestampsAreInvalid(t *testing.T) {
	srv := testserver.Start(t)
	acme := testserver.NewCompany(t, srv.App.Org)
	ctx := context.Background()
	for _, p := range testserver.Protocols() {
		dash := rallyev1connect.NewDashboardServiceClient(p.Client, srv.URL, append(p.Opts, testserver.Bearer(acme.AdminToken))...)
		for _, at := range []time.Time{time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC), time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)} {
			ts := timestamppb.New(at)
			t.Run(fmt.Sprintf("%s/%d", p.Name, at.Year()), func(t *testing.T) {
				_, err := dash.GetLevel1(ctx, &rallyev1.GetLevel1Request{At: ts})
				wantField(t, err, "at")
				_, err = dash.GetLevel2(ctx, &rallyev1.GetLevel2Request{At: ts})
				wantField(t, err, "at")
				_, err = dash.GetLevel3(ctx, &rallyev1.GetLevel3Request{At: ts})
				wantField(t, err, "at")
			})
		}
	}
}

// syncBuffer collects the server's log lines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) lines() []map[string]any {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(b.buf.Bytes()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

// metric reads one series of /metrics.
func metric(t *testing.T, srv *testserver.Server, series string) string {
	t.Helper()
	res, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, series+" ") {
			return strings.TrimPrefix(line, series+" ")
		}
	}
	return ""
}

// TestUnencodableRepliesAreInternalErrors: a reply that cannot be encoded
// (a stored date beyond JSON's year 9999) used to leave the handler as a
// success, then fail inside connect: not logged, no request id, counted ok.
// Now it is an internal error like any other: the request id in the answer
// and in the log line with the cause, and counted as internal.
func TestUnencodableRepliesAreInternalErrors(t *testing.T) {
	logs := &syncBuffer{}
	srv := testserver.StartLogging(t, logs)
	acme := testserver.NewCompany(t, srv.App.Org)
	ctx := context.Background()
	team, err := srv.App.Org.CreateTeam(ctx, acme.Operator, org.CreateTeamRequest{Name: "Futur"})
	if err != nil {
		t.Fatal(err)
	}
	err = srv.App.DB.InTenant(ctx, acme.Tenant.ID, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `UPDATE teams SET created_at = '12000-01-01T00:00:00Z' WHERE tenant_id = $1 AND id = $2`, acme.Tenant.ID, team.ID)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range testserver.Protocols() {
		t.Run(p.Name, func(t *testing.T) {
			client := orgClient(srv, testserver.Protocol{Name: p.Name, Client: p.Client,
				Opts: append([]connect.ClientOption{connect.WithProtoJSON()}, p.Opts...)}, acme.AdminToken)
			_, err := client.GetTeam(ctx, &rallyev1.GetTeamRequest{TeamId: team.ID.String()})
			wantCode(t, err, connect.CodeInternal)
			var ce *connect.Error
			if !errors.As(err, &ce) {
				t.Fatal(err)
			}
			id := ce.Meta().Get("X-Request-Id")
			if id == "" || !strings.Contains(ce.Message(), "request id "+id) {
				t.Fatalf("answer %q, request id %q: want the id in the message", ce.Message(), id)
			}
			logged := false
			for _, l := range logs.lines() {
				if l["request_id"] == id && l["code"] == "internal" && strings.Contains(fmt.Sprint(l["error"]), "encode") {
					logged = true
				}
			}
			if !logged {
				t.Fatalf("no log line with request id %s, code internal and the cause", id)
			}
		})
	}
	series := `rallye_rpc_requests_total{code="internal",procedure="` + rallyev1connect.OrganizationServiceGetTeamProcedure + `"}`
	if got := metric(t, srv, series); got != "3" {
		t.Fatalf("%s = %q, want 3", series, got)
	}
	if got := metric(t, srv, `rallye_rpc_requests_total{code="ok",procedure="`+rallyev1connect.OrganizationServiceGetTeamProcedure+`"}`); got != "" {
		t.Fatalf("the failures were also counted ok: %s", got)
	}
	// Binary protobuf has no range to break: the same team reads.
	if _, err := orgClient(srv, testserver.Protocols()[0], acme.AdminToken).GetTeam(ctx, &rallyev1.GetTeamRequest{TeamId: team.ID.String()}); err != nil {
		t.Fatal(err)
	}
}
