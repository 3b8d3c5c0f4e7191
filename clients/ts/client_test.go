// Package ts_test runs the TypeScript client (@rallye/client) against a real
// server: the generated code compiles, every service is exported, and calls,
// errors and a server stream behave as they do from Go.
package ts_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	rallyev1 "github.com/rallyehq/rallye/gen/rallye/v1"
	"github.com/rallyehq/rallye/gen/rallye/v1/rallyev1connect"
	"github.com/rallyehq/rallye/internal/rallye"
	"github.com/rallyehq/rallye/internal/testutil/testserver"
)

func TestTypeScriptClient(t *testing.T) {
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatal("node is needed to test the TypeScript client (Debian's nodejs)")
	}
	if _, err := os.Stat("node_modules/.bin/tsc"); err != nil {
		t.Fatal("the TypeScript client's packages are not installed: run `make tools`")
	}
	// Compile the package and its smoke script: a type error in the generated
	// code or in src/ fails here.
	if out, err := exec.Command("node_modules/.bin/tsc", "-p", ".").CombinedOutput(); err != nil {
		t.Fatalf("tsc: %v\n%s", err, out)
	}

	srv := testserver.Start(t)
	company := testserver.NewCompany(t, srv.App.Org)
	rep, repToken := testserver.NewPerson(t, srv.App.Org, company, []rallye.Role{rallye.RoleRep})
	// The ready-to-use KPI model, so that the rep's dashboard has cards.
	if _, err := srv.App.KPI.InstallModel(context.Background(), company.Operator, company.Admin.ID); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "dist/test/smoke.js", srv.URL, company.AdminToken, repToken)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("smoke script: %v\n%s", err, stderr.String())
	}
	got := map[string]json.RawMessage{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		var line struct {
			Check string          `json:"check"`
			Value json.RawMessage `json:"value"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("smoke output %q: %v", sc.Text(), err)
		}
		got[line.Check] = line.Value
	}

	// The package exports every service of the protos.
	var services []string
	protoregistry.GlobalFiles.RangeFilesByPackage("rallye.v1", func(fd protoreflect.FileDescriptor) bool {
		for i := range fd.Services().Len() {
			services = append(services, string(fd.Services().Get(i).FullName()))
		}
		return true
	})
	slices.Sort(services)
	var exported []string
	decode(t, got, "services", &exported)
	if !slices.Equal(exported, services) {
		t.Errorf("exported services = %v, want %v", exported, services)
	}

	// JSON and binary give the same answers, those the server holds.
	type me struct{ ID, Tenant string }
	wantMe := me{ID: company.Admin.ID.String(), Tenant: company.Tenant.ID.String()}
	wantNames := []string{company.Admin.DisplayName, rep.DisplayName}
	slices.Sort(wantNames)
	for _, format := range []string{"json", "binary"} {
		var m me
		decode(t, got, "me."+format, &m)
		if m != wantMe {
			t.Errorf("me over %s = %+v, want %+v", format, m, wantMe)
		}
		var names []string
		decode(t, got, "users."+format, &names)
		if !slices.Equal(names, wantNames) {
			t.Errorf("users over %s = %v, want %v", format, names, wantNames)
		}
	}

	// Errors arrive as Connect codes, validation naming the field.
	for check, want := range map[string][]string{
		"rep.listUsers":  {"PermissionDenied"},
		"stranger.getMe": {"Unauthenticated"},
		"invalid":        {"InvalidArgument", "page_size"},
	} {
		var msg string
		decode(t, got, check, &msg)
		for _, w := range want {
			if !strings.Contains(msg, w) {
				t.Errorf("%s = %q, want it to contain %q", check, msg, w)
			}
		}
	}

	// The stream's first message is the rep's level-3 dashboard, as Go reads it.
	var first struct {
		Snapshot bool
		Kpis     []string
	}
	decode(t, got, "watch.first", &first)
	dashboards := rallyev1connect.NewDashboardServiceClient(http.DefaultClient, srv.URL, testserver.Bearer(repToken))
	level3, err := dashboards.GetLevel3(ctx, &rallyev1.GetLevel3Request{})
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, card := range level3.Kpis {
		keys = append(keys, card.Key)
	}
	slices.Sort(keys)
	if !first.Snapshot || !slices.Equal(first.Kpis, keys) || len(keys) == 0 {
		t.Errorf("first Watch message = %+v, want the snapshot of %v", first, keys)
	}
}

func decode(t *testing.T, got map[string]json.RawMessage, check string, v any) {
	t.Helper()
	raw, ok := got[check]
	if !ok {
		t.Fatalf("the smoke script printed no %q", check)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		t.Fatalf("%s: %v", check, err)
	}
}
