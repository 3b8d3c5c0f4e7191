package event

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	dto "github.com/prometheus/client_model/go"

	"github.com/rallyehq/rallye/internal/org"
	"github.com/rallyehq/rallye/internal/rallye"
	"github.com/rallyehq/rallye/internal/testutil"
)

// waitUntil polls the store's queue state until cond holds.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestGroupCommitQueue holds a company's only group transaction at the
// feed's lock, queues three calls behind it and cancels one of them: the
// cancelled call leaves the queue and stores nothing, the two others are
// stored by one transaction once the first commits (the turn passes to
// them), each told about its own event, and the queue is gone afterwards
// (no turn was lost), so that a later call runs at once.
func TestGroupCommitQueue(t *testing.T) {
	db := testutil.DB(t)
	ctx := context.Background()
	tenant, _, err := org.NewService(db).CreateTenant(ctx, org.NewTenant{Name: "A", Slug: "acme", TimeZone: "UTC",
		DefaultLocale: org.LocaleEN, Admin: org.UserInput{DisplayName: "A", Email: "a@acme.test"}})
	if err != nil {
		t.Fatal(err)
	}
	p := rallye.Principal{TenantID: tenant.ID, Roles: []rallye.Role{rallye.RoleIntegration}}
	store := NewStore(db)
	store.GroupTransactions = 1
	spend := func(id string) []Row {
		return []Row{{HasAmount: true, Event: Event{Source: "ads", ExternalID: id, Type: MarketingSpend,
			OccurredAt: time.Date(2026, 3, 3, 9, 0, 0, 0, time.UTC), Amount: 100, Currency: "EUR", Channel: "ads"}}}
	}
	queue := func() (running, pending int, exists bool) {
		store.groups.mu.Lock()
		defer store.groups.mu.Unlock()
		q := store.groups.queues[tenant.ID]
		if q == nil {
			return 0, 0, false
		}
		return q.running, len(q.pending), true
	}

	// Another connection holds the company's feed lock.
	blocker, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = blocker.Rollback(ctx) }()
	h := fnv.New64a()
	h.Write([]byte("feed"))
	h.Write(tenant.ID[:])
	if _, err := blocker.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(h.Sum64())); err != nil {
		t.Fatal(err)
	}

	type answer struct {
		res Result
		err error
	}
	send := func(ctx context.Context, id string) chan answer {
		out := make(chan answer, 1)
		go func() {
			res, err := store.Ingest(ctx, p, spend(id))
			out <- answer{res, err}
		}()
		return out
	}
	first := send(ctx, "first")
	waitUntil(t, "the first call's transaction runs", func() bool { r, n, _ := queue(); return r == 1 && n == 0 })
	leaving, leave := context.WithCancel(ctx)
	defer leave()
	left := send(leaving, "left")
	waitUntil(t, "a call waits", func() bool { _, n, _ := queue(); return n == 1 })
	second, third := send(ctx, "second"), send(ctx, "third")
	waitUntil(t, "three calls wait", func() bool { _, n, _ := queue(); return n == 3 })
	leave()
	if a := <-left; !errors.Is(a.err, context.Canceled) {
		t.Fatalf("the cancelled call: %+v", a)
	}
	if r, n, _ := queue(); r != 1 || n != 2 {
		t.Fatalf("after the cancelled call left: %d running, %d waiting", r, n)
	}

	if err := blocker.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	for name, ch := range map[string]chan answer{"first": first, "second": second, "third": third} {
		if a := <-ch; a.err != nil || a.res.Accepted != 1 || a.res.Duplicates+a.res.Corrected+len(a.res.Rejected) != 0 {
			t.Fatalf("%s call: %+v", name, a)
		}
	}
	// The answers go out before the group's runner leaves the queue.
	waitUntil(t, "the queue is removed", func() bool { _, _, exists := queue(); return !exists })
	transactions, calls := histogramCounts(t, store)
	if transactions != 2 || calls != 3 {
		t.Fatalf("%d calls in %d transactions, want 3 in 2", calls, transactions)
	}
	// A later call runs at once; the cancelled call stored nothing.
	if res, err := store.Ingest(ctx, p, spend("left")); err != nil || res.Accepted != 1 {
		t.Fatalf("the cancelled event sent again: %+v %v", res, err)
	}
}

// TestGroupCommitTellsEachCallerItsOwn runs one group of calls carrying
// the same source event, invalid rows and an unknown rep, and checks each
// caller's answer against running the calls one after the other.
func TestGroupCommitTellsEachCallerItsOwn(t *testing.T) {
	db := testutil.DB(t)
	ctx := context.Background()
	svc := org.NewService(db)
	tenant, admin, err := svc.CreateTenant(ctx, org.NewTenant{Name: "A", Slug: "acme", TimeZone: "UTC",
		DefaultLocale: org.LocaleEN, Admin: org.UserInput{DisplayName: "A", Email: "a@acme.test"}})
	if err != nil {
		t.Fatal(err)
	}
	op := rallye.Principal{TenantID: tenant.ID, UserID: admin.ID, Roles: []rallye.Role{rallye.RoleAdmin}}
	rep, err := svc.CreateUser(ctx, op, org.CreateUserRequest{User: org.UserInput{DisplayName: "R", Email: "r@acme.test",
		Locale: org.LocaleEN, ExternalID: "crm-r", Roles: []rallye.Role{rallye.RoleRep}}})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 3, 3, 9, 0, 0, 0, time.UTC)
	callEv := func(id string, rev int64, repExt string) Row {
		return Row{Event: Event{Source: "crm", ExternalID: id, Revision: rev, Type: CallLogged, OccurredAt: at, RepExternalID: repExt}}
	}
	invalid := Row{Invalid: &RowError{Index: 1, Field: "type", Message: "unknown"}}
	groupCalls := [][]Row{
		{callEv("a", 0, rep.ExternalID)},
		{callEv("a", 0, rep.ExternalID), invalid}, // a duplicate of the first call's
		{callEv("b", 1, rep.ExternalID)},
		{callEv("b", 2, rep.ExternalID), callEv("c", 0, "crm-ghost"), callEv("d", 0, "crm-ghost")},
		{callEv("b", 1, rep.ExternalID)},
	}
	want := []Result{
		{Accepted: 1},
		{Duplicates: 1, Rejected: []RowError{{Index: 1, Field: "type", Message: "unknown"}}},
		{Duplicates: 1}, // revision 2 of the same group wins: as if the fourth call ran first
		{Accepted: 1, Parked: []ParkedRow{{Index: 1, RepExternalID: "crm-ghost"}, {Index: 2, RepExternalID: "crm-ghost"}},
			UnknownReps: []string{"crm-ghost"}},
		{Duplicates: 1},
	}
	store := NewStore(db)
	var group []*call
	for _, rows := range groupCalls {
		group = append(group, &call{ctx: ctx, rows: rows, done: make(chan struct{})})
	}
	store.runGroup(tenant.ID, group)
	for i, c := range group {
		<-c.done
		if c.err != nil || fmt.Sprint(c.res) != fmt.Sprint(want[i]) {
			t.Errorf("call %d: %+v %v, want %+v", i, c.res, c.err, want[i])
		}
	}
	var stored []string
	err = db.ReadTenant(ctx, tenant.ID, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT external_id || ':' || revision FROM events ORDER BY 1`)
		if err != nil {
			return err
		}
		stored, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	})
	if err != nil || fmt.Sprint(stored) != "[a:0 b:2]" {
		t.Fatalf("stored %v %v", stored, err)
	}
}

// histogramCounts reads the store's group transactions and the calls they
// stored.
func histogramCounts(t *testing.T, s *Store) (transactions, calls uint64) {
	t.Helper()
	var m dto.Metric
	if err := s.metrics.groupCalls.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetHistogram().GetSampleCount(), uint64(m.GetHistogram().GetSampleSum())
}
