package event_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/rallyehq/rallye/internal/event"
	"github.com/rallyehq/rallye/internal/event/eventgen"
	"github.com/rallyehq/rallye/internal/org"
	"github.com/rallyehq/rallye/internal/postgres"
	"github.com/rallyehq/rallye/internal/rallye"
	"github.com/rallyehq/rallye/internal/testutil"
)

type bundle struct {
	db     *postgres.DB
	store  *event.Store
	feed   *event.Feed
	log    *recorder
	op     rallye.Principal
	reps   []eventgen.Rep
	userOf map[string]uuid.UUID
	teamOf map[uuid.UUID]uuid.UUID
}

// recorder is a feed consumer that keeps every change it is given.
type recorder struct {
	mu      sync.Mutex
	changes []event.Change
}

func (r *recorder) Name() string { return "test-recorder" }

func (r *recorder) Consume(_ context.Context, _ pgx.Tx, _ uuid.UUID, changes []event.Change) (event.Applied, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.changes = append(r.changes, changes...)
	return event.Applied{}, nil
}

// counted returns the versions whose changes sum to +1, failing on any other
// non-zero sum (a version given twice or taken back twice).
func (r *recorder) counted(t *testing.T) map[uuid.UUID]event.Event {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	sum := map[uuid.UUID]int{}
	ev := map[uuid.UUID]event.Event{}
	for _, c := range r.changes {
		sum[c.Event.VersionID] += c.Sign
		ev[c.Event.VersionID] = c.Event
	}
	out := map[uuid.UUID]event.Event{}
	for id, s := range sum {
		switch s {
		case 0:
		case 1:
			out[id] = ev[id]
		default:
			t.Fatalf("version %s has a net contribution of %d", id, s)
		}
	}
	return out
}

func setup(t testing.TB, nReps int) *bundle {
	t.Helper()
	db := testutil.DB(t)
	ctx := context.Background()
	svc := org.NewService(db)
	tenant, admin, err := svc.CreateTenant(ctx, org.NewTenant{Name: "Acme", Slug: "acme", TimeZone: "Europe/Paris",
		DefaultLocale: org.LocaleFR, Admin: org.UserInput{DisplayName: "Admin", Email: "admin@acme.test"}})
	if err != nil {
		t.Fatal(err)
	}
	b := &bundle{db: db, store: event.NewStore(db), log: &recorder{}, userOf: map[string]uuid.UUID{}, teamOf: map[uuid.UUID]uuid.UUID{}}
	b.op = rallye.Principal{TenantID: tenant.ID, UserID: admin.ID, Roles: []rallye.Role{rallye.RoleAdmin}}
	b.feed = event.NewFeed(db, slog.New(slog.NewTextHandler(io.Discard, nil)))
	b.feed.Register(b.log)
	teams := make([]org.Team, 3)
	for i := range teams {
		if teams[i], err = svc.CreateTeam(ctx, b.op, org.CreateTeamRequest{Name: fmt.Sprintf("Team %d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	var rows []org.ImportRow
	for i := range nReps {
		ext := fmt.Sprintf("crm-rep-%d", i)
		b.reps = append(b.reps, eventgen.Rep{ExternalID: ext, Skill: 0.8 + 0.1*float64(i%5)})
		rows = append(rows, org.ImportRow{User: org.UserInput{DisplayName: ext, Email: ext + "@acme.test", Locale: org.LocaleFR,
			ExternalID: ext, Roles: []rallye.Role{rallye.RoleRep}, TeamIDs: []uuid.UUID{teams[i%3].ID}}})
	}
	if _, err := svc.ImportUsers(ctx, b.op, rows); err != nil {
		t.Fatal(err)
	}
	users, err := svc.ListUsers(ctx, b.op, org.ListUsersRequest{Size: 500})
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range users {
		b.userOf[u.ExternalID] = u.ID
		if len(u.TeamIDs) > 0 {
			b.teamOf[u.ID] = u.TeamIDs[0]
		}
	}
	return b
}

func (b *bundle) dataset(t testing.TB, seed uint64, days int) ([]eventgen.Delivery, []event.Event) {
	t.Helper()
	loc, _ := time.LoadLocation("Europe/Paris")
	start := time.Date(2026, 3, 2, 0, 0, 0, 0, loc)
	var deliveries []eventgen.Delivery
	var truth []event.Event
	cfg := eventgen.Default(seed, b.reps, start, start.AddDate(0, 0, days), loc)
	err := eventgen.Generate(cfg, func(d eventgen.Delivery) error {
		deliveries = append(deliveries, d)
		return nil
	}, func(e event.Event) { truth = append(truth, e) })
	if err != nil {
		t.Fatal(err)
	}
	return deliveries, truth
}

func rowsOf(ds []eventgen.Delivery) []event.Row {
	out := make([]event.Row, len(ds))
	for i, d := range ds {
		out[i] = event.Row{Event: d.Event, HasAmount: d.HasAmount}
	}
	return out
}

func (b *bundle) ingestAll(t *testing.T, ds []eventgen.Delivery, size int) event.Result {
	t.Helper()
	var total event.Result
	for i := 0; i < len(ds); i += size {
		res, err := b.store.Ingest(context.Background(), b.op, rowsOf(ds[i:min(i+size, len(ds))]))
		if err != nil {
			t.Fatal(err)
		}
		total.Accepted += res.Accepted
		total.Corrected += res.Corrected
		total.Duplicates += res.Duplicates
		total.Rejected = append(total.Rejected, res.Rejected...)
	}
	return total
}

// drain applies the feed. Changes stay pending while any older
// transaction of the cluster runs (another test's, on a shared server):
// retry until they pass.
func (b *bundle) drain(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		pending, err := b.feed.Drain(context.Background(), b.op.TenantID)
		if err != nil {
			t.Fatalf("drain: %v", err)
		}
		if !pending {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("drain: changes still pending after 30s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type versionKey struct {
	source, externalID string
	revision           int64
}

// checkTruth compares the versions the feed says count with the
// generator's ground truth, field by field where it matters.
func (b *bundle) checkTruth(t *testing.T, truth []event.Event) {
	t.Helper()
	got := map[versionKey]event.Event{}
	for _, e := range b.log.counted(t) {
		got[versionKey{e.Source, e.ExternalID, e.Revision}] = e
	}
	if len(got) != len(truth) {
		t.Errorf("%d versions count, the truth has %d", len(got), len(truth))
	}
	for _, want := range truth {
		e, ok := got[versionKey{want.Source, want.ExternalID, want.Revision}]
		if !ok {
			t.Fatalf("truth version %s/%s rev %d (%s) does not count", want.Source, want.ExternalID, want.Revision, want.Type)
		}
		if e.Amount != want.Amount || !e.OccurredAt.Equal(want.OccurredAt) || e.Type != want.Type {
			t.Fatalf("version %s differs from the truth: %+v vs %+v", want.ExternalID, e, want)
		}
		if want.RepExternalID != "" {
			user := b.userOf[want.RepExternalID]
			if e.UserID != user || len(e.TeamIDs) != 1 || e.TeamIDs[0] != b.teamOf[user] {
				t.Fatalf("version %s: rep %s teams %v, want %s in %s", want.ExternalID, e.UserID, e.TeamIDs, user, b.teamOf[user])
			}
		}
	}
}

func countChanges(t *testing.T, b *bundle) (n int) {
	t.Helper()
	err := b.db.ReadTenant(context.Background(), b.op.TenantID, func(tx pgx.Tx) error {
		return tx.QueryRow(context.Background(), `SELECT count(*) FROM event_changes`).Scan(&n)
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestIngestMatchesTruthAndReplaysChangeNothing(t *testing.T) {
	b := setup(t, 6)
	deliveries, truth := b.dataset(t, 1, 21)
	res := b.ingestAll(t, deliveries, 250)
	if len(res.Rejected) > 0 {
		t.Fatalf("rejected: %+v", res.Rejected[:min(3, len(res.Rejected))])
	}
	if res.Accepted+res.Corrected+res.Duplicates != len(deliveries) {
		t.Fatalf("counts %+v do not add up to %d deliveries", res, len(deliveries))
	}
	if res.Corrected == 0 || res.Duplicates == 0 {
		t.Fatalf("the dataset should exercise corrections and duplicates: %+v", res)
	}
	b.drain(t)
	b.checkTruth(t, truth)

	before := countChanges(t, b)
	replay := b.ingestAll(t, deliveries, 250)
	if replay.Accepted != 0 || replay.Corrected != 0 || replay.Duplicates != len(deliveries) {
		t.Fatalf("replay = %+v, want %d duplicates", replay, len(deliveries))
	}
	if after := countChanges(t, b); after != before {
		t.Fatalf("replay added %d feed changes", after-before)
	}
	b.drain(t)
	b.checkTruth(t, truth)

	marks, err := b.store.Watermarks(context.Background(), b.op.TenantID)
	if err != nil {
		t.Fatal(err)
	}
	var newest time.Time
	for _, d := range deliveries {
		if d.Event.OccurredAt.After(newest) {
			newest = d.Event.OccurredAt
		}
	}
	if len(marks) != 1 || !marks[0].NewestEvent.Equal(newest) || marks[0].Events != int64(res.Accepted) {
		t.Fatalf("watermarks = %+v, want newest %s and %d events", marks, newest, res.Accepted)
	}
}

// TestConcurrentShuffledIngest delivers the same dataset in a random order,
// from several goroutines at once: the outcome must not depend on order.
func TestConcurrentShuffledIngest(t *testing.T) {
	b := setup(t, 5)
	deliveries, truth := b.dataset(t, 2, 14)
	rng := rand.New(rand.NewPCG(7, 7))
	rng.Shuffle(len(deliveries), func(i, j int) { deliveries[i], deliveries[j] = deliveries[j], deliveries[i] })
	const workers = 4
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := w * 100; i < len(deliveries); i += workers * 100 {
				if _, err := b.store.Ingest(context.Background(), b.op, rowsOf(deliveries[i:min(i+100, len(deliveries))])); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	// The feed runs while batches commit.
	var drains sync.WaitGroup
	stop := make(chan struct{})
	drains.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := b.feed.Drain(context.Background(), b.op.TenantID); err != nil {
				errs <- err
				return
			}
		}
	})
	wg.Wait()
	close(stop)
	drains.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	b.drain(t)
	b.checkTruth(t, truth)
}

func TestRejections(t *testing.T) {
	b := setup(t, 2)
	ctx := context.Background()
	at := time.Date(2026, 3, 3, 10, 0, 0, 0, time.UTC)
	ok := event.Event{Source: "crm", ExternalID: "call-1", Type: event.CallLogged, OccurredAt: at, RepExternalID: "crm-rep-0"}
	mk := func(mut func(e *event.Event)) event.Row {
		e := ok
		e.ExternalID = uuid.NewString()
		mut(&e)
		return event.Row{Event: e}
	}
	other := uuid.New()
	tests := []struct {
		name  string
		row   event.Row
		field string
	}{
		{"OtherCompanyRep", mk(func(e *event.Event) { e.RepExternalID, e.UserID = "", other }), "rep_id"},
		{"BothRepNames", mk(func(e *event.Event) { e.UserID = b.userOf["crm-rep-1"] }), "rep_external_id"},
		{"MissingRep", mk(func(e *event.Event) { e.RepExternalID = "" }), "rep_external_id"},
		{"WonWithoutAmount", mk(func(e *event.Event) {
			e.Type, e.OpportunityID, e.DealKind, e.OpportunityCreatedAt = event.DealWon, "o1", "new", at.Add(-time.Hour)
		}), "amount"},
		{"WonInAnotherCurrency", event.Row{HasAmount: true, Event: func() event.Event {
			e := mk(func(e *event.Event) {}).Event
			e.Type, e.OpportunityID, e.DealKind, e.OpportunityCreatedAt = event.DealWon, "o1", "new", at.Add(-time.Hour)
			e.Amount, e.Currency = 100, "USD"
			return e
		}()}, "amount.currency"},
		{"CreatedAfterWon", event.Row{HasAmount: true, Event: func() event.Event {
			e := mk(func(e *event.Event) {}).Event
			e.Type, e.OpportunityID, e.DealKind, e.OpportunityCreatedAt = event.DealWon, "o1", "new", at.Add(time.Hour)
			e.Amount, e.Currency = 100, "EUR"
			return e
		}()}, "opportunity_created_at"},
		{"NPSOutOfRange", mk(func(e *event.Event) { s := int32(11); e.Type, e.Score, e.RepExternalID = event.NPSAnswered, &s, "" }), "score"},
		{"StageWithoutEntry", mk(func(e *event.Event) {
			e.Type, e.OpportunityID, e.Stage, e.FromStage = event.OpportunityStageChanged, "o1", "proposal", "discovery"
		}), "stage_entered_at"},
	}
	rows := []event.Row{{Event: ok}}
	for _, tt := range tests {
		rows = append(rows, tt.row)
	}
	// An unknown CRM rep is not an error: the event is parked (issue 15
	// item 3, see TestParkedEvents).
	rows = append(rows, mk(func(e *event.Event) { e.RepExternalID = "crm-ghost" }))
	res, err := b.store.Ingest(ctx, b.op, rows)
	if err != nil {
		t.Fatal(err)
	}
	if res.Accepted != 1 || len(res.Rejected) != len(tests) {
		t.Fatalf("result = %+v", res)
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := res.Rejected[i]
			if r.Index != i+1 || r.Field != tt.field {
				t.Fatalf("rejection = %+v, want index %d field %s", r, i+1, tt.field)
			}
		})
	}
	if len(res.UnknownReps) != 1 || res.UnknownReps[0] != "crm-ghost" || len(res.Parked) != 1 || res.Parked[0].Index != len(rows)-1 {
		t.Fatalf("unknown reps = %v, parked %v", res.UnknownReps, res.Parked)
	}
}

// TestReopenedDealsInAnyOrder delivers a win, its reopening and a second
// win in every order: the first win never counts, the second always does.
func TestReopenedDealsInAnyOrder(t *testing.T) {
	b := setup(t, 1)
	ctx := context.Background()
	t0 := time.Date(2026, 3, 3, 9, 0, 0, 0, time.UTC)
	won := func(id string, at time.Time, amount int64) event.Row {
		return event.Row{HasAmount: true, Event: event.Event{Source: "crm", ExternalID: id, Type: event.DealWon, OccurredAt: at,
			RepExternalID: "crm-rep-0", OpportunityID: "opp-" + id[:2], Amount: amount, Currency: "EUR", DealKind: "new",
			OpportunityCreatedAt: t0.Add(-72 * time.Hour)}}
	}
	orders := [][]int{{0, 1, 2}, {0, 2, 1}, {1, 0, 2}, {1, 2, 0}, {2, 0, 1}, {2, 1, 0}}
	for n, order := range orders {
		t.Run(fmt.Sprint(order), func(t *testing.T) {
			p := fmt.Sprintf("%02d", n)
			first, second := won(p+"-won-1", t0, 1000), won(p+"-won-2", t0.Add(48*time.Hour), 2500)
			reopen := event.Row{Event: event.Event{Source: "crm", ExternalID: p + "-reopen", Type: event.DealReopened,
				OccurredAt: t0.Add(24 * time.Hour), OpportunityID: "opp-" + p}}
			rows := []event.Row{first, reopen, second}
			for _, i := range order {
				if _, err := b.store.Ingest(ctx, b.op, []event.Row{rows[i]}); err != nil {
					t.Fatal(err)
				}
			}
			b.drain(t)
			counted := map[string]bool{}
			for _, e := range b.log.counted(t) {
				counted[e.ExternalID] = true
			}
			if counted[p+"-won-1"] || !counted[p+"-won-2"] || !counted[p+"-reopen"] {
				t.Fatalf("counted = %v", counted)
			}
			// Retracting the reopening revives the first win.
			r := reopen
			r.Event.Revision, r.Event.Retracted = 1, true
			if _, err := b.store.Ingest(ctx, b.op, []event.Row{r}); err != nil {
				t.Fatal(err)
			}
			b.drain(t)
			counted = map[string]bool{}
			for _, e := range b.log.counted(t) {
				counted[e.ExternalID] = true
			}
			if !counted[p+"-won-1"] || !counted[p+"-won-2"] || counted[p+"-reopen"] {
				t.Fatalf("after retracting the reopening, counted = %v", counted)
			}
		})
	}
}

func TestCorrectionKeepsTeamAttribution(t *testing.T) {
	b := setup(t, 2)
	ctx := context.Background()
	at := time.Date(2026, 3, 3, 9, 0, 0, 0, time.UTC)
	call := event.Row{Event: event.Event{Source: "crm", ExternalID: "c1", Type: event.CallLogged, OccurredAt: at, RepExternalID: "crm-rep-0"}}
	if _, err := b.store.Ingest(ctx, b.op, []event.Row{call}); err != nil {
		t.Fatal(err)
	}
	// The rep moves to another team; the call's correction still counts
	// for the team it was first counted for.
	rep := b.userOf["crm-rep-0"]
	newTeam := b.teamOf[b.userOf["crm-rep-1"]]
	svc := org.NewService(b.db)
	if _, err := svc.UpdateUser(ctx, b.op, rep, org.UserPatch{TeamIDs: &[]uuid.UUID{newTeam}}); err != nil {
		t.Fatal(err)
	}
	fixed := call
	fixed.Event.Revision, fixed.Event.OccurredAt = 1, at.Add(time.Hour)
	res, err := b.store.Ingest(ctx, b.op, []event.Row{fixed})
	if err != nil || res.Corrected != 1 {
		t.Fatalf("correction: %+v %v", res, err)
	}
	b.drain(t)
	counted := b.log.counted(t)
	if len(counted) != 1 {
		t.Fatalf("%d versions count", len(counted))
	}
	for _, e := range counted {
		if e.Revision != 1 || e.TeamIDs[0] != b.teamOf[rep] {
			t.Fatalf("counted %+v, want revision 1 for team %s", e, b.teamOf[rep])
		}
	}
}
