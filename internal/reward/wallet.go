package reward

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/rallyehq/rallye/internal/idempotency"
	"github.com/rallyehq/rallye/internal/leaderboard"
	"github.com/rallyehq/rallye/internal/outbox"
	"github.com/rallyehq/rallye/internal/postgres"
	"github.com/rallyehq/rallye/internal/rallye"
)

// Balance is a person's points, as the ledger sums them:
//
//   - Lifetime: every entry but spending and refunds (levels use it;
//     spending does not lower it);
//   - Pending: entries of challenges whose results are not final yet, which
//     a correction from the CRM may still take back;
//   - Spendable: every entry but pending ones (what the catalogue costs),
//     never below zero.
type Balance struct {
	Spendable, Lifetime, Pending int64
}

// HistoryEntry is a ledger entry as the wallet shows it.
type HistoryEntry struct {
	Seq    int64
	Key    string
	Points int64
	Kind   leaderboard.EntryKind
	// Text is the line in the reader's language: "+40 Mission 'Quiz
	// produit' approved by Sophie Martin".
	Text string
	// Pending: the entry's challenge is not final yet.
	Pending     bool
	ChallengeID uuid.UUID
	EarnedAt    time.Time
	RecordedAt  time.Time
}

// Wallet is a person's wallet: balance, level and the newest entries.
type Wallet struct {
	UserID uuid.UUID
	Balance
	Level Level
	// Next is the next level (nil at the top); ToNext the lifetime points
	// still needed to reach it.
	Next    *Level
	ToNext  int64
	Entries []HistoryEntry
	// NextCursor continues the history after Entries (0: nothing more).
	NextCursor int64
}

// History limits.
const (
	DefaultEntries = 20
	MaxEntries     = 100
)

// Wallet returns a person's wallet (uuid.Nil: the caller's) with its newest
// entries in the caller's language: one call for the app's wallet screen.
//
// Errors: CodeNotFound for someone not in the company; CodePermissionDenied
// unless the caller is the person, one of their managers, HR or an admin.
func (s *Service) Wallet(ctx context.Context, p rallye.Principal, userID uuid.UUID, entries int) (Wallet, error) {
	if entries <= 0 {
		entries = DefaultEntries
	}
	entries = min(entries, MaxEntries)
	var out Wallet
	err := s.db.ReadTenant(ctx, p.TenantID, func(tx pgx.Tx) error {
		var err error
		out, err = s.wallet(ctx, tx, p, userID, 0, entries)
		return err
	})
	return out, err
}

// History returns a page of a person's entries, newest first, after cursor
// (0: from the newest).
func (s *Service) History(ctx context.Context, p rallye.Principal, userID uuid.UUID, cursor int64, size int) (Wallet, error) {
	if size <= 0 {
		size = DefaultEntries
	}
	size = min(size, MaxEntries)
	var out Wallet
	err := s.db.ReadTenant(ctx, p.TenantID, func(tx pgx.Tx) error {
		var err error
		out, err = s.wallet(ctx, tx, p, userID, cursor, size)
		return err
	})
	return out, err
}

// wallet reads a wallet page: the people, the balance, the settings, the
// entries, and which of their challenges are settled.
func (s *Service) wallet(ctx context.Context, tx pgx.Tx, p rallye.Principal, userID uuid.UUID, before int64, n int) (Wallet, error) {
	if userID == uuid.Nil {
		if !p.IsPerson() {
			return Wallet{}, rallye.Invalid("user_id", "is required for an API key")
		}
		userID = p.UserID
	}
	ids := []uuid.UUID{userID}
	if p.IsPerson() && p.UserID != userID {
		ids = append(ids, p.UserID)
	}
	// One round trip for the person, the balance, the rules and the page.
	ps := map[uuid.UUID]person{}
	var bal Balance
	var st Settings
	var page []leaderboard.LedgerEntry
	b := &pgx.Batch{}
	queuePeople(b, p.TenantID, ids, ps)
	b.Queue(`SELECT spendable, lifetime, pending FROM wallet_balances WHERE tenant_id = $1 AND user_id = $2`,
		p.TenantID, userID).QueryRow(func(r pgx.Row) error {
		err := r.Scan(&bal.Spendable, &bal.Lifetime, &bal.Pending)
		if postgres.IsNoRows(err) {
			return nil
		}
		return err
	})
	queueSettings(b, p.TenantID, &st)
	leaderboard.QueueReadLedger(b, p.TenantID, userID, before, n, &page)
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return Wallet{}, fmt.Errorf("read wallet: %w", err)
	}
	who, ok := ps[userID]
	if !ok {
		return Wallet{}, rallye.NotFound("person")
	}
	if p.UserID != userID {
		a := &access{p: p}
		ok, err := a.canRead(ctx, tx, who)
		if err != nil {
			return Wallet{}, err
		}
		if !ok {
			return Wallet{}, denied("only the person, their managers, HR and admins see a wallet")
		}
	}
	locale := who.Locale
	if reader, ok := ps[p.UserID]; ok {
		locale = reader.Locale
	}
	settled, err := settledAmong(ctx, tx, p.TenantID, page)
	if err != nil {
		return Wallet{}, err
	}
	w := Wallet{UserID: userID, Balance: bal}
	w.Level, w.Next = LevelOf(st.Levels, bal.Lifetime)
	if w.Next != nil {
		w.ToNext = w.Next.Min - bal.Lifetime
	}
	for _, e := range page {
		w.Entries = append(w.Entries, HistoryEntry{
			Seq: e.Seq, Key: e.Key, Points: e.Points, Kind: e.Kind, Text: historyLine(e, locale),
			Pending: e.ChallengeID != uuid.Nil && !settled[e.ChallengeID], ChallengeID: e.ChallengeID,
			EarnedAt: e.EarnedAt, RecordedAt: e.RecordedAt,
		})
	}
	if len(page) == n {
		w.NextCursor = page[len(page)-1].Seq
	}
	return w, nil
}

// settledAmong returns which challenges of entries are settled.
func settledAmong(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, entries []leaderboard.LedgerEntry) (map[uuid.UUID]bool, error) {
	var ids []uuid.UUID
	for _, e := range entries {
		if e.ChallengeID != uuid.Nil {
			ids = append(ids, e.ChallengeID)
		}
	}
	out := map[uuid.UUID]bool{}
	if len(ids) == 0 {
		return out, nil
	}
	rows, err := tx.Query(ctx, `SELECT challenge_id FROM wallet_settlements WHERE tenant_id = $1 AND challenge_id = ANY($2)`, tenantID, ids)
	if err != nil {
		return nil, fmt.Errorf("read settlements: %w", err)
	}
	var id uuid.UUID
	if _, err := pgx.ForEachRow(rows, []any{&id}, func() error { out[id] = true; return nil }); err != nil {
		return nil, fmt.Errorf("read settlements: %w", err)
	}
	return out, nil
}

// balanceOf reads a person's balance in tx.
func balanceOf(ctx context.Context, tx pgx.Tx, tenantID, userID uuid.UUID) (Balance, error) {
	var b Balance
	err := tx.QueryRow(ctx, `SELECT spendable, lifetime, pending FROM wallet_balances WHERE tenant_id = $1 AND user_id = $2`,
		tenantID, userID).Scan(&b.Spendable, &b.Lifetime, &b.Pending)
	if postgres.IsNoRows(err) {
		return Balance{}, nil
	}
	if err != nil {
		return Balance{}, fmt.Errorf("read balance: %w", err)
	}
	return b, nil
}

// cause is the JSON this package writes in the ledger's cause column (its
// entry kinds: rank and threshold rewards, manual grants, kudos,
// redemptions, refunds, adjustments).
type cause struct {
	ChallengeID uuid.UUID `json:"challenge_id,omitzero"`
	Challenge   *Text     `json:"challenge,omitempty"`
	Rank        int       `json:"rank,omitempty"`
	// Label: a challenge reward's label, or a catalogue item's name.
	Label  *Text     `json:"label,omitempty"`
	ByID   uuid.UUID `json:"by_id,omitzero"`
	By     string    `json:"by,omitempty"`
	Reason string    `json:"reason,omitempty"`
	// KudosID, RedemptionID, ItemID link to the object.
	KudosID      uuid.UUID `json:"kudos_id,omitzero"`
	RedemptionID uuid.UUID `json:"redemption_id,omitzero"`
	ItemID       uuid.UUID `json:"item_id,omitzero"`
	// State: a refund's reason ("rejected", "cancelled").
	State string `json:"state,omitempty"`
	// Note: "opening" for the adjustment of the wallet's creation,
	// "settlement" for a challenge's.
	Note string `json:"note,omitempty"`
}

func (c cause) json() json.RawMessage {
	b, _ := json.Marshal(c)
	return b
}

// GrantRequest is a manager's grant of points.
type GrantRequest struct {
	UserID uuid.UUID
	Points int64
	// Reason is mandatory: the person reads it in their history.
	Reason    string
	RequestID string
}

// Grant limits.
const (
	minReasonLen = 3
	maxReasonLen = 200
)

// GrantPoints credits points to someone of the caller's teams (managers) or
// of the company (admins), with a mandatory reason, and returns their
// balance. Retrying with the same request id grants once.
//
// Errors: CodeInvalid for a reason of fewer than 3 or more than 200
// characters, or points outside 1..the company's max_manual_grant;
// CodeNotFound for someone not in the company; CodePermissionDenied for
// someone outside the manager's teams, or oneself (reason SELF_GRANT);
// CodeFailedPrecondition for a deactivated person (INACTIVE).
func (s *Service) GrantPoints(ctx context.Context, p rallye.Principal, req GrantRequest) (Balance, error) {
	req.Reason = strings.TrimSpace(req.Reason)
	if n := len([]rune(req.Reason)); n < minReasonLen || n > maxReasonLen {
		return Balance{}, rallye.Invalid("reason", "must be %d to %d characters: the person reads it", minReasonLen, maxReasonLen)
	}
	if req.Points <= 0 {
		return Balance{}, rallye.Invalid("points", "must be positive")
	}
	var out Balance
	err := s.inTenant(ctx, p.TenantID, func(ctx context.Context, tx pgx.Tx) error {
		st, err := settings(ctx, tx, p.TenantID)
		if err != nil {
			return err
		}
		if req.Points > st.MaxManualGrant {
			return rallye.Invalid("points", "must be at most %d (the company's max_manual_grant)", st.MaxManualGrant)
		}
		ids := []uuid.UUID{req.UserID}
		if p.IsPerson() {
			ids = append(ids, p.UserID)
		}
		ps, err := people(ctx, tx, p.TenantID, ids)
		if err != nil {
			return err
		}
		who, ok := ps[req.UserID]
		if !ok {
			return rallye.NotFound("person")
		}
		if p.UserID == req.UserID {
			return &rallye.Error{Code: rallye.CodePermissionDenied, Reason: "SELF_GRANT", Message: "nobody grants points to themselves"}
		}
		a := &access{p: p}
		if ok, err := a.manages(ctx, tx, who); err != nil {
			return err
		} else if !ok {
			return denied("managers grant points to the people of their teams")
		}
		if !who.Active {
			return failed("INACTIVE", "the person is deactivated")
		}
		id, _, err := idempotency.Claim(ctx, tx, idempotency.Key{Caller: p, Operation: "GrantPoints",
			RequestID: req.RequestID, Request: req}, newID())
		if err != nil {
			return err
		}
		by := ps[p.UserID].DisplayName
		if by == "" {
			by = "Rallye"
		}
		if err := s.record(ctx, tx, p.TenantID, []leaderboard.Entry{{
			Key: "manual:" + id.String(), UserID: who.ID, Points: req.Points, At: s.now(), Reason: "manual",
			Kind: leaderboard.EntryManual, Cause: cause{ByID: p.UserID, By: by, Reason: req.Reason}.json(),
		}}); err != nil {
			return err
		}
		if err := outbox.Append(ctx, tx, outbox.Message{TenantID: p.TenantID, Kind: MessagePointsGranted,
			Key: "manual:" + id.String(), Subjects: []uuid.UUID{who.ID}, OccurredAt: s.now(),
			Payload: PointsGranted{UserID: who.ID, Points: req.Points, Kind: "manual", Reason: req.Reason, ByID: p.UserID, By: by}}); err != nil {
			return err
		}
		out, err = balanceOf(ctx, tx, p.TenantID, who.ID)
		return err
	})
	return out, err
}
