package app_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/types/known/timestamppb"

	rallyev1 "github.com/rallyehq/rallye/gen/rallye/v1"
	"github.com/rallyehq/rallye/gen/rallye/v1/rallyev1connect"
	"github.com/rallyehq/rallye/internal/app"
	"github.com/rallyehq/rallye/internal/auth"
	"github.com/rallyehq/rallye/internal/challenge"
	"github.com/rallyehq/rallye/internal/kpi"
	"github.com/rallyehq/rallye/internal/org"
	"github.com/rallyehq/rallye/internal/rallye"
	"github.com/rallyehq/rallye/internal/telemetry"
	"github.com/rallyehq/rallye/internal/testutil/testserver"
)

// spanTree indexes one trace's finished spans.
type spanTree struct {
	spans    []tracetest.SpanStub
	byID     map[trace.SpanID]tracetest.SpanStub
	children map[trace.SpanID][]tracetest.SpanStub
}

func treeOf(all tracetest.SpanStubs, id trace.TraceID) spanTree {
	t := spanTree{byID: map[trace.SpanID]tracetest.SpanStub{}, children: map[trace.SpanID][]tracetest.SpanStub{}}
	for _, s := range all {
		if s.SpanContext.TraceID() != id {
			continue
		}
		t.spans = append(t.spans, s)
		t.byID[s.SpanContext.SpanID()] = s
		t.children[s.Parent.SpanID()] = append(t.children[s.Parent.SpanID()], s)
	}
	return t
}

// find returns the spans named name (or starting with it, for a trailing *).
func (t spanTree) find(name string) []tracetest.SpanStub {
	var out []tracetest.SpanStub
	for _, s := range t.spans {
		if s.Name == name || (strings.HasSuffix(name, "*") && strings.HasPrefix(s.Name, strings.TrimSuffix(name, "*"))) {
			out = append(out, s)
		}
	}
	return out
}

// under reports whether a span named name (or prefix*) descends from root.
func (t spanTree) under(root tracetest.SpanStub, name string) bool {
	for _, c := range t.children[root.SpanContext.SpanID()] {
		if c.Name == name || (strings.HasSuffix(name, "*") && strings.HasPrefix(c.Name, strings.TrimSuffix(name, "*"))) ||
			t.under(c, name) {
			return true
		}
	}
	return false
}

// TestEventBatchIsOneTrace ingests a batch through the API of a server
// traced into an in-memory exporter and checks the trace of the batch: the
// RPC, the ingestion and its queries, then each change-feed consumer (run
// asynchronously, after the response, as children of the ingestion through
// the trace context the feed notification carried), their queries, the
// River job the scoring enqueues, and their Redis publications (the KPI
// change announcement, the leaderboard script), all in one tree with one
// root.
func TestEventBatchIsOneTrace(t *testing.T) {
	exporter := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exporter))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	srv := testserver.StartWith(t, app.Options{Tracing: telemetry.New(tp, telemetry.Options{})})
	ctx := context.Background()

	// A company with the KPI model and an upsell challenge for a team.
	c := testserver.NewCompany(t, srv.App.Org)
	team, err := srv.App.Org.CreateTeam(ctx, c.Operator, org.CreateTeamRequest{Name: "North"})
	if err != nil {
		t.Fatal(err)
	}
	rep, _ := testserver.NewPerson(t, srv.App.Org, c, []rallye.Role{rallye.RoleRep}, team)
	if _, err := srv.App.KPI.InstallModel(ctx, c.Operator, uuid.Nil); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.App.Challenges.CreateFromTemplate(ctx, c.Operator, challenge.FromTemplateRequest{
		TemplateKey: "upsell", TeamIDs: []uuid.UUID{team.ID}, Publish: true, RequestID: uuid.NewString(),
	}); err != nil {
		t.Fatal(err)
	}
	_, key, err := srv.App.APIKeys.Create(ctx, c.Operator, auth.CreateAPIKeyRequest{Name: "crm"})
	if err != nil {
		t.Fatal(err)
	}

	// Two upsell deals of the rep, one batch.
	at := time.Now().Add(time.Second)
	var events []*rallyev1.SalesEvent
	for i := range 2 {
		events = append(events, &rallyev1.SalesEvent{Source: "crm", ExternalId: fmt.Sprintf("won-%d", i), Type: "deal.won",
			OccurredAt: timestamppb.New(at), RepExternalId: rep.ExternalID, OpportunityId: fmt.Sprintf("opp-%d", i),
			Amount: &rallyev1.Money{MinorUnits: 250_000, Currency: "EUR"}, DealKind: "upsell", Segment: "smb",
			OpportunityCreatedAt: timestamppb.New(at.Add(-72 * time.Hour))})
	}
	client := rallyev1connect.NewEventServiceClient(http.DefaultClient, srv.URL, testserver.Bearer(key))
	res, err := client.IngestEvents(ctx, &rallyev1.IngestEventsRequest{Events: events})
	if err != nil {
		t.Fatal(err)
	}
	if res.Accepted != 2 {
		t.Fatalf("accepted %d of 2", res.Accepted)
	}

	const rpc = "rallye.v1.EventService/IngestEvents"
	consumers := []string{"feed " + kpi.ConsumerName, "feed " + challenge.ProgressConsumer}
	// What each consumer publishes to Redis: the KPI change announcement
	// (SPUBLISH), the leaderboard script (EVALSHA, in a pipeline).
	publishes := map[string]string{consumers[0]: "spublish", consumers[1]: "redis.pipeline evalsha*"}
	var tree spanTree
	var missing string
	deadline := time.Now().Add(30 * time.Second)
	for {
		missing = ""
		all := exporter.GetSpans()
		var root *tracetest.SpanStub
		for i := range all {
			if all[i].Name == rpc {
				root = &all[i]
			}
		}
		if root == nil {
			missing = "the RPC's span"
		} else {
			tree = treeOf(all, root.SpanContext.TraceID())
			ingest := tree.find("event.ingest")
			switch {
			case len(ingest) != 1:
				missing = "one event.ingest span"
			default:
				for _, name := range consumers {
					spans := tree.find(name)
					if len(spans) == 0 {
						missing = name
						break
					}
					if !tree.under(spans[0], publishes[name]) {
						missing = publishes[name] + " under " + name
						break
					}
				}
			}
		}
		if missing == "" {
			break
		}
		if time.Now().After(deadline) {
			var names []string
			for _, s := range tree.spans {
				names = append(names, fmt.Sprintf("%s<-%s", s.Name, tree.byID[s.Parent.SpanID()].Name))
			}
			t.Fatalf("the batch's trace lacks %s; it has %d spans: %v", missing, len(tree.spans), names)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// The shape of the tree.
	rootSpan := tree.find(rpc)[0]
	if rootSpan.SpanKind != trace.SpanKindServer {
		t.Errorf("the RPC span is %v, want a server span", rootSpan.SpanKind)
	}
	ingest := tree.find("event.ingest")[0]
	if ingest.Parent.SpanID() != rootSpan.SpanContext.SpanID() {
		t.Errorf("event.ingest is not a child of the RPC")
	}
	if !tree.under(ingest, "INSERT*") {
		t.Errorf("the ingestion's queries are not under event.ingest")
	}
	for _, name := range consumers {
		for _, s := range tree.find(name) {
			if s.Parent.SpanID() != ingest.SpanContext.SpanID() {
				t.Errorf("%s is a child of %q, want event.ingest", name, tree.byID[s.Parent.SpanID()].Name)
			}
			if s.SpanKind != trace.SpanKindConsumer {
				t.Errorf("%s is %v, want a consumer span", name, s.SpanKind)
			}
			if !tree.under(s, "SELECT*") {
				t.Errorf("%s has no query under it", name)
			}
		}
	}
	if !tree.under(tree.find(consumers[1])[0], "river.insert_many") {
		t.Errorf("the scoring transaction's job insertion (leaderboard repair) is not under %s", consumers[1])
	}
	// One tree: a single root, every other span's parent in the trace.
	roots := 0
	for _, s := range tree.spans {
		if !s.Parent.SpanID().IsValid() {
			roots++
			continue
		}
		if _, ok := tree.byID[s.Parent.SpanID()]; !ok {
			t.Errorf("span %s has a parent outside the trace", s.Name)
		}
	}
	if roots != 1 {
		t.Errorf("%d roots, want 1", roots)
	}
}
