// Package reward is the rewards area: the wallet (spendable, lifetime and
// pending points, read from the one points ledger), levels, badges, streaks,
// kudos with the team feed, and the reward catalogue with redemptions and
// their approval.
//
// It is fed, never called, by the other areas: the change feed
// (event.Feed: streaks, activity badges, wins) and the outbox (challenge
// results and mission completions from internal/challenge, points recorded
// from internal/leaderboard). What it decides it announces in the outbox in
// turn (messages.go), for notifications and analytics. Points are written
// through the leaderboard's Scores.Record, the ledger's only writer.
package reward

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/rallyehq/rallye/internal/leaderboard"
	"github.com/rallyehq/rallye/internal/org"
	"github.com/rallyehq/rallye/internal/postgres"
	"github.com/rallyehq/rallye/internal/rallye"
)

// Ledger records points: the leaderboard's Scores.
type Ledger interface {
	Record(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, entries []leaderboard.Entry) (leaderboard.Receipt, error)
	Publish(ctx context.Context, r leaderboard.Receipt)
}

// Deps are what the service needs.
type Deps struct {
	DB     *postgres.DB
	Ledger Ledger
	Log    *slog.Logger
	// Now is the clock (time.Now by default).
	Now func() time.Time
}

// Service is the rewards area's use cases.
type Service struct {
	db     *postgres.DB
	ledger Ledger
	log    *slog.Logger
	now    func() time.Time
}

// New returns the service.
func New(d Deps) *Service {
	s := &Service{db: d.DB, ledger: d.Ledger, log: d.Log, now: d.Now}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	return s
}

func newID() uuid.UUID { return uuid.Must(uuid.NewV7()) }

func failed(reason, format string, args ...any) error {
	return &rallye.Error{Code: rallye.CodeFailedPrecondition, Reason: reason, Message: fmt.Sprintf(format, args...)}
}

func denied(format string, args ...any) error {
	return rallye.Errorf(rallye.CodePermissionDenied, format, args...)
}

// Text is a text in French and English.
type Text struct {
	FR string `json:"fr"`
	EN string `json:"en"`
}

// In returns the text in locale, falling back to the other language.
func (t Text) In(locale string) string {
	if locale == "en" && t.EN != "" || t.FR == "" {
		return t.EN
	}
	return t.FR
}

// person is what the rewards area needs about someone.
type person struct {
	ID          uuid.UUID
	DisplayName string
	Locale      string
	TimeZone    string // the person's, else the company's
	ExternalID  string
	Active      bool
	Roles       []rallye.Role
	TeamIDs     []uuid.UUID
}

func (p person) location() *time.Location {
	loc, err := time.LoadLocation(p.TimeZone)
	if err != nil {
		return time.UTC
	}
	return loc
}

// people reads people of the company; ids missing from the result are not
// in it.
func people(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, ids []uuid.UUID) (map[uuid.UUID]person, error) {
	out := map[uuid.UUID]person{}
	b := &pgx.Batch{}
	queuePeople(b, tenantID, ids, out)
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return nil, err
	}
	return out, nil
}

// queuePeople queues people's query on a batch; dest is filled when it runs.
func queuePeople(b *pgx.Batch, tenantID uuid.UUID, ids []uuid.UUID, dest map[uuid.UUID]person) {
	b.Queue(`SELECT u.id, u.display_name, u.locale, coalesce(nullif(u.time_zone, ''), t.time_zone),
			coalesce(u.external_id, ''), u.active, u.roles,
			coalesce((SELECT array_agg(m.team_id ORDER BY m.team_id) FROM team_members m
				WHERE m.tenant_id = u.tenant_id AND m.user_id = u.id), '{}')
		FROM users u JOIN tenants t ON t.id = u.tenant_id
		WHERE u.tenant_id = $1 AND u.id = ANY($2)`, tenantID, ids).Query(func(rows pgx.Rows) error {
		var p person
		var roles []string
		_, err := pgx.ForEachRow(rows, []any{&p.ID, &p.DisplayName, &p.Locale, &p.TimeZone, &p.ExternalID, &p.Active, &roles, &p.TeamIDs}, func() error {
			q := p
			q.Roles = nil
			for _, r := range roles {
				q.Roles = append(q.Roles, rallye.Role(r))
			}
			q.TeamIDs = slices.Clone(p.TeamIDs)
			dest[q.ID] = q
			return nil
		})
		if err != nil {
			return fmt.Errorf("read people: %w", err)
		}
		return nil
	})
}

// personOf reads one person; NotFound when they are not in the company.
func personOf(ctx context.Context, tx pgx.Tx, tenantID, id uuid.UUID) (person, error) {
	ps, err := people(ctx, tx, tenantID, []uuid.UUID{id})
	if err != nil {
		return person{}, err
	}
	p, ok := ps[id]
	if !ok {
		return person{}, rallye.NotFound("person")
	}
	return p, nil
}

// Finer authorization, on top of the role table of internal/api:
//
//   - a person reads their own wallet, streaks, redemptions;
//   - a manager also those of the people of their teams and sub-teams
//     (org.ManagedTeams), grants them points and decides their redemptions;
//   - HR reads everyone's; admins read and decide everything.
//
// Someone of another company is NotFound, like someone who does not exist.

// access caches what authorization needs about the caller.
type access struct {
	p       rallye.Principal
	managed []uuid.UUID
	read    bool
}

func (a *access) managedTeams(ctx context.Context, tx pgx.Tx) ([]uuid.UUID, error) {
	if !a.read {
		a.read = true
		if a.p.Has(rallye.RoleManager) && a.p.IsPerson() {
			var err error
			if a.managed, err = org.ManagedTeams(ctx, tx, a.p.TenantID, a.p.UserID); err != nil {
				return nil, fmt.Errorf("managed teams: %w", err)
			}
		}
	}
	return a.managed, nil
}

// manages reports whether the caller manages someone: an admin, or a
// manager of one of their teams.
func (a *access) manages(ctx context.Context, tx pgx.Tx, who person) (bool, error) {
	if a.p.Has(rallye.RoleAdmin) {
		return true, nil
	}
	managed, err := a.managedTeams(ctx, tx)
	if err != nil {
		return false, err
	}
	for _, t := range who.TeamIDs {
		if slices.Contains(managed, t) {
			return true, nil
		}
	}
	return false, nil
}

// canRead reports whether the caller may read someone's wallet, streaks and
// redemptions.
func (a *access) canRead(ctx context.Context, tx pgx.Tx, who person) (bool, error) {
	if a.p.UserID == who.ID || a.p.Has(rallye.RoleHR) {
		return true, nil
	}
	return a.manages(ctx, tx, who)
}

// subject resolves the person a call is about (uuid.Nil: the caller) and
// checks the caller may read them.
func (a *access) subject(ctx context.Context, tx pgx.Tx, id uuid.UUID) (person, error) {
	if id == uuid.Nil {
		if !a.p.IsPerson() {
			return person{}, rallye.Invalid("user_id", "is required for an API key")
		}
		id = a.p.UserID
	}
	who, err := personOf(ctx, tx, a.p.TenantID, id)
	if err != nil {
		return person{}, err
	}
	ok, err := a.canRead(ctx, tx, who)
	if err != nil {
		return person{}, err
	}
	if !ok {
		return person{}, denied("only the person, their managers, HR and admins see this")
	}
	return who, nil
}

type receiptsKey struct{}

// withReceipts lets code deep in a transaction hand the ledger's receipts
// to the caller that publishes them after commit.
func withReceipts(ctx context.Context, rs *[]leaderboard.Receipt) context.Context {
	return context.WithValue(ctx, receiptsKey{}, rs)
}

// record writes ledger entries and keeps the receipt for publication.
func (s *Service) record(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, entries []leaderboard.Entry) error {
	if len(entries) == 0 {
		return nil
	}
	if s.ledger == nil {
		return fmt.Errorf("reward: no ledger")
	}
	for chunk := range slices.Chunk(entries, leaderboard.MaxEntries) {
		r, err := s.ledger.Record(ctx, tx, tenantID, chunk)
		if err != nil {
			return err
		}
		if rs, _ := ctx.Value(receiptsKey{}).(*[]leaderboard.Receipt); rs != nil {
			*rs = append(*rs, r)
		}
	}
	return nil
}

func (s *Service) publish(ctx context.Context, rs []leaderboard.Receipt) {
	for _, r := range rs {
		s.ledger.Publish(ctx, r)
	}
}

// inTenant runs fn in a company transaction and publishes the points it
// recorded after commit.
func (s *Service) inTenant(ctx context.Context, tenantID uuid.UUID, fn func(ctx context.Context, tx pgx.Tx) error) error {
	var receipts []leaderboard.Receipt
	err := s.db.InTenant(ctx, tenantID, func(tx pgx.Tx) error {
		receipts = nil
		return fn(withReceipts(ctx, &receipts), tx)
	})
	if err == nil {
		s.publish(ctx, receipts)
	}
	return err
}

// nullID maps uuid.Nil to NULL.
func nullID(id uuid.UUID) *uuid.UUID {
	if id == uuid.Nil {
		return nil
	}
	return &id
}
