package api_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	rallyev1 "github.com/rallyehq/rallye/gen/rallye/v1"
	"github.com/rallyehq/rallye/internal/auth"
	"github.com/rallyehq/rallye/internal/org"
	"github.com/rallyehq/rallye/internal/rallye"
	"github.com/rallyehq/rallye/internal/testutil/testserver"
)

// TestParkedEvents: events for a CRM id no person carries are parked, not
// rejected: counted nowhere, listed to admins (ListParkedEvents), and
// ingested as if just arrived when that person is imported or created:
// the highest revision wins, the team is the person's, a re-delivery is a
// duplicate (issue 15 item 3).
func TestParkedEvents(t *testing.T) {
	srv := testserver.Start(t)
	ctx := context.Background()
	acme := testserver.NewCompany(t, srv.App.Org)
	globex := testserver.NewCompany(t, srv.App.Org)
	squad, err := srv.App.Org.CreateTeam(ctx, acme.Operator, org.CreateTeamRequest{Name: "Late squad"})
	if err != nil {
		t.Fatal(err)
	}
	_, repToken := testserver.NewPerson(t, srv.App.Org, acme, []rallye.Role{rallye.RoleRep})
	_, key, err := srv.App.APIKeys.Create(ctx, acme.Operator, auth.CreateAPIKeyRequest{Name: "crm"})
	if err != nil {
		t.Fatal(err)
	}
	p := testserver.Protocols()[0]
	crm := eventClient(srv, p, key)
	admin := eventClient(srv, p, acme.AdminToken)
	people := orgClient(srv, p, acme.AdminToken)

	at := time.Date(2026, 3, 3, 10, 0, 0, 0, time.UTC)
	deal := func(id string, rev, euros int64, rep string) *rallyev1.SalesEvent {
		return &rallyev1.SalesEvent{Source: "crm", ExternalId: id, Revision: rev, Type: "deal.won", OccurredAt: timestamppb.New(at),
			RepExternalId: rep, OpportunityId: "opp-" + id, Amount: &rallyev1.Money{MinorUnits: euros * 100, Currency: "EUR"},
			DealKind: "new", OpportunityCreatedAt: timestamppb.New(at.Add(-240 * time.Hour))}
	}
	call := func(id, rep string) *rallyev1.SalesEvent {
		return &rallyev1.SalesEvent{Source: "crm", ExternalId: id, Type: "call.logged", OccurredAt: timestamppb.New(at), RepExternalId: rep}
	}
	ingest := func(t *testing.T, evs ...*rallyev1.SalesEvent) *rallyev1.IngestEventsResponse {
		t.Helper()
		res, err := crm.IngestEvents(ctx, &rallyev1.IngestEventsRequest{Events: evs})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	parkedIndexes := func(res *rallyev1.IngestEventsResponse) []int32 {
		var out []int32
		for _, r := range res.Parked {
			out = append(out, r.GetIndex())
		}
		return out
	}
	// stored lists the company's stored events by external id.
	stored := func(t *testing.T) map[string]*rallyev1.StoredEvent {
		t.Helper()
		res, err := admin.ListEvents(ctx, &rallyev1.ListEventsRequest{PageSize: 500})
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]*rallyev1.StoredEvent{}
		for _, e := range res.Events {
			out[e.Event.ExternalId] = e
		}
		return out
	}

	// Everything is sent before the person exists; the reference keeps the
	// highest revision of each event.
	sent := [][]*rallyev1.SalesEvent{
		{deal("late-1", 0, 100, "crm-late"), call("late-2", "crm-late")},
		{deal("late-1", 1, 250, "crm-late")},
		{deal("late-1", 0, 100, "crm-late"), call("late-2", "crm-late")}, // re-delivered
	}
	want := map[string]*rallyev1.SalesEvent{}
	for _, batch := range sent {
		res := ingest(t, batch...)
		if res.Accepted+res.Corrected+res.Duplicates != 0 || len(res.Rejected) != 0 || len(parkedIndexes(res)) != len(batch) ||
			!slices.Equal(res.UnknownRepExternalIds, []string{"crm-late"}) {
			t.Fatalf("batch answered %v", res)
		}
		for i, r := range res.Parked {
			if r.GetIndex() != int32(i) || r.RepExternalId != "crm-late" {
				t.Fatalf("parked %v", res.Parked)
			}
		}
		for _, e := range batch {
			if w := want[e.ExternalId]; w == nil || e.Revision > w.Revision {
				want[e.ExternalId] = e
			}
		}
	}
	if got := stored(t); len(got) != 0 {
		t.Fatalf("parked events are stored: %v", got)
	}

	t.Run("Listed", func(t *testing.T) {
		first, err := admin.ListParkedEvents(ctx, &rallyev1.ListParkedEventsRequest{PageSize: 2})
		if err != nil {
			t.Fatal(err)
		}
		rest, err := admin.ListParkedEvents(ctx, &rallyev1.ListParkedEventsRequest{PageSize: 2, PageToken: first.NextPageToken})
		if err != nil {
			t.Fatal(err)
		}
		all := append(first.ParkedEvents, rest.ParkedEvents...)
		// Three distinct revisions: the re-delivery parked nothing new.
		if len(all) != 3 || rest.NextPageToken != "" {
			t.Fatalf("parked events %v then %v", first, rest)
		}
		for _, pk := range all {
			if pk.Event.RepExternalId != "crm-late" || !pk.ExpireTime.AsTime().After(pk.ParkTime.AsTime().Add(29*24*time.Hour)) {
				t.Fatalf("parked event %v", pk)
			}
		}
		other, err := admin.ListParkedEvents(ctx, &rallyev1.ListParkedEventsRequest{RepExternalId: "crm-nobody"})
		if err != nil || len(other.ParkedEvents) != 0 {
			t.Fatalf("filtered: %v %v", other, err)
		}
	})
	t.Run("ErrOtherTenant", func(t *testing.T) {
		res, err := eventClient(srv, p, foreign(globex.AdminToken)).ListParkedEvents(ctx, &rallyev1.ListParkedEventsRequest{})
		if err != nil || len(res.ParkedEvents) != 0 {
			t.Fatalf("another company lists %v %v", res, err)
		}
	})
	t.Run("ErrPermissionDenied", func(t *testing.T) {
		_, err := eventClient(srv, p, repToken).ListParkedEvents(ctx, &rallyev1.ListParkedEventsRequest{})
		wantCode(t, err, connect.CodePermissionDenied)
		_, err = crm.ListParkedEvents(ctx, &rallyev1.ListParkedEventsRequest{})
		wantCode(t, err, connect.CodePermissionDenied)
	})

	t.Run("TakenInByImport", func(t *testing.T) {
		imp, err := people.ImportUsers(ctx, &rallyev1.ImportUsersRequest{Users: []*rallyev1.UserInput{{
			DisplayName: "Late Rep", Email: "late@acme.test", Locale: rallyev1.Locale_LOCALE_FR, ExternalId: "crm-late",
			Roles: []rallyev1.Role{rallyev1.Role_ROLE_REP}, TeamIds: []string{squad.ID.String()},
		}}})
		if err != nil || imp.Created != 1 {
			t.Fatalf("import %v %v", imp, err)
		}
		got := stored(t)
		if len(got) != len(want) {
			t.Fatalf("stored %d events, want %d", len(got), len(want))
		}
		var rep string
		for id, w := range want {
			g := got[id]
			if g == nil || g.Event.Revision != w.Revision || g.Event.GetAmount().GetMinorUnits() != w.GetAmount().GetMinorUnits() ||
				!g.Counted || !slices.Equal(g.TeamIds, []string{squad.ID.String()}) || g.RepId == "" || (rep != "" && g.RepId != rep) {
				t.Fatalf("%s stored as %v, want %v", id, g, w)
			}
			rep = g.RepId
		}
		left, err := admin.ListParkedEvents(ctx, &rallyev1.ListParkedEventsRequest{})
		if err != nil || len(left.ParkedEvents) != 0 {
			t.Fatalf("still parked: %v %v", left, err)
		}
		// The same idempotency as if they had been sent now.
		again := ingest(t, sent[0]...)
		if again.Duplicates != 2 || len(again.Parked) != 0 {
			t.Fatalf("re-delivery after the import %v", again)
		}
	})
	t.Run("TakenInByCreateUser", func(t *testing.T) {
		if res := ingest(t, call("late-3", "crm-late-b")); !slices.Equal(parkedIndexes(res), []int32{0}) {
			t.Fatalf("parked %v", res)
		}
		u, err := people.CreateUser(ctx, &rallyev1.CreateUserRequest{User: &rallyev1.UserInput{
			DisplayName: "Later Rep", Email: "later@acme.test", Locale: rallyev1.Locale_LOCALE_EN, ExternalId: "crm-late-b",
			Roles: []rallyev1.Role{rallyev1.Role_ROLE_REP},
		}})
		if err != nil {
			t.Fatal(err)
		}
		if g := stored(t)["late-3"]; g == nil || g.RepId != u.User.Id || !g.Counted {
			t.Fatalf("late-3 stored as %v", g)
		}
	})
}
