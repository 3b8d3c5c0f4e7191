package reward

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/rallyehq/rallye/internal/idempotency"
	"github.com/rallyehq/rallye/internal/leaderboard"
	"github.com/rallyehq/rallye/internal/outbox"
	"github.com/rallyehq/rallye/internal/page"
	"github.com/rallyehq/rallye/internal/postgres"
	"github.com/rallyehq/rallye/internal/rallye"
)

// RedemptionState is where a redemption stands:
//
//	pending -> approved -> fulfilled
//	pending -> rejected              (points refunded)
//	pending, approved -> cancelled   (points refunded)
//
// An item without approval starts approved.
type RedemptionState string

// Redemption states.
const (
	RedemptionPending   RedemptionState = "pending"
	RedemptionApproved  RedemptionState = "approved"
	RedemptionFulfilled RedemptionState = "fulfilled"
	RedemptionRejected  RedemptionState = "rejected"
	RedemptionCancelled RedemptionState = "cancelled"
)

// Redemption is a person's request for a catalogue reward.
type Redemption struct {
	ID, ItemID, UserID uuid.UUID
	// Person is the person's display name.
	Person string
	State  RedemptionState
	Cost   int64
	// MoneyValue in minor units of Currency, fixed when requested.
	MoneyValue  int64
	Currency    string
	Item        Text
	RequestedAt time.Time
	DecidedBy   uuid.UUID
	DecidedAt   time.Time
	Note        string
	FulfilledBy uuid.UUID
	FulfilledAt time.Time
	UpdatedAt   time.Time
}

const redemptionColumns = `r.id, r.item_id, r.user_id, u.display_name, r.state, r.cost, r.money_value, r.currency,
	r.item_name_fr, r.item_name_en, r.requested_at, coalesce(r.decided_by, '00000000-0000-0000-0000-000000000000'),
	r.decided_at, r.note, coalesce(r.fulfilled_by, '00000000-0000-0000-0000-000000000000'), r.fulfilled_at, r.updated_at`

const redemptionFrom = ` FROM redemptions r JOIN users u ON u.tenant_id = r.tenant_id AND u.id = r.user_id`

func scanRedemption(row pgx.Row) (Redemption, error) {
	var r Redemption
	var decided, fulfilled *time.Time
	err := row.Scan(&r.ID, &r.ItemID, &r.UserID, &r.Person, &r.State, &r.Cost, &r.MoneyValue, &r.Currency, &r.Item.FR,
		&r.Item.EN, &r.RequestedAt, &r.DecidedBy, &decided, &r.Note, &r.FulfilledBy, &fulfilled, &r.UpdatedAt)
	if decided != nil {
		r.DecidedAt = *decided
	}
	if fulfilled != nil {
		r.FulfilledAt = *fulfilled
	}
	return r, err
}

func getRedemption(ctx context.Context, tx pgx.Tx, tenantID, id uuid.UUID, lock bool) (Redemption, error) {
	q := `SELECT ` + redemptionColumns + redemptionFrom + ` WHERE r.tenant_id = $1 AND r.id = $2`
	if lock {
		q += ` FOR UPDATE OF r`
	}
	r, err := scanRedemption(tx.QueryRow(ctx, q, tenantID, id))
	if postgres.IsNoRows(err) {
		return Redemption{}, rallye.NotFound("redemption")
	}
	if err != nil {
		return Redemption{}, fmt.Errorf("read redemption: %w", err)
	}
	return r, nil
}

// RedeemRequest is a person's request for an item.
type RedeemRequest struct {
	ItemID    uuid.UUID
	RequestID string
}

// Redeem spends the caller's points on an item: pending when the item needs
// approval, approved otherwise. Retrying with the same request id returns
// the same redemption (even if it moved on since). Stock is never oversold
// and points never go below zero, whatever the concurrency: the stock is
// taken by a conditional update of the item's row, the points by the
// ledger entry whose balance row refuses to go below zero, both held until
// commit, and as late as possible in the transaction so that concurrent
// redemptions of one item wait for each other briefly.
//
// Errors: CodeNotFound for an item of another company or not visible to the
// caller; CodeFailedPrecondition when the item is archived or outside its
// window (NOT_AVAILABLE), the person's limit is reached (LIMIT_REACHED), or
// the wallet holds too few spendable points (INSUFFICIENT_POINTS);
// CodeResourceExhausted when out of stock (OUT_OF_STOCK).
func (s *Service) Redeem(ctx context.Context, p rallye.Principal, req RedeemRequest) (Redemption, error) {
	if !p.IsPerson() {
		return Redemption{}, failed("NOT_A_PERSON", "this call is for people, not API keys")
	}
	outOfStock := &rallye.Error{Code: rallye.CodeResourceExhausted, Reason: "OUT_OF_STOCK", Message: "this reward is out of stock"}
	var out Redemption
	err := s.inTenant(ctx, p.TenantID, func(ctx context.Context, tx pgx.Tx) error {
		id, fresh, err := idempotency.Claim(ctx, tx, idempotency.Key{Caller: p, Operation: "RedeemReward",
			RequestID: req.RequestID, Request: req.ItemID}, newID())
		if err != nil {
			return err
		}
		if !fresh {
			out, err = getRedemption(ctx, tx, p.TenantID, id, false)
			return err
		}
		it, err := getItem(ctx, tx, p.TenantID, req.ItemID, false)
		if err != nil {
			return err
		}
		who, err := personOf(ctx, tx, p.TenantID, p.UserID)
		if err != nil {
			return err
		}
		var teams []uuid.UUID
		if !seesAll(p) {
			if teams, err = visibleTeams(ctx, tx, p.TenantID, who.TeamIDs); err != nil {
				return err
			}
			if !itemVisible(it, teams) || it.Archived {
				return rallye.NotFound("reward")
			}
		}
		now := s.now().Truncate(time.Microsecond) // as PostgreSQL stores it: a replay returns the same
		switch {
		case it.Archived:
			return failed("NOT_AVAILABLE", "this reward was withdrawn from the catalogue")
		case !it.ActiveFrom.IsZero() && now.Before(it.ActiveFrom):
			return failed("NOT_AVAILABLE", "this reward may be redeemed from %s", it.ActiveFrom.Format(time.RFC3339))
		case !it.ActiveUntil.IsZero() && !now.Before(it.ActiveUntil):
			return failed("NOT_AVAILABLE", "this reward could be redeemed until %s", it.ActiveUntil.Format(time.RFC3339))
		}
		if it.PerPersonLimit > 0 {
			// A person's concurrent redemptions of the item take turns here;
			// other people's do not wait.
			if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`,
				"redeem:"+it.ID.String()+":"+p.UserID.String()); err != nil {
				return fmt.Errorf("lock person's redemptions: %w", err)
			}
			var held int
			if err := tx.QueryRow(ctx, `SELECT count(*) FROM redemptions WHERE tenant_id = $1 AND item_id = $2 AND user_id = $3
				AND state IN ('pending', 'approved', 'fulfilled')`, p.TenantID, it.ID, p.UserID).Scan(&held); err != nil {
				return fmt.Errorf("count redemptions: %w", err)
			}
			if held >= it.PerPersonLimit {
				return failed("LIMIT_REACHED", "you already hold %d of this reward, the most a person may", held)
			}
		}
		if it.Stock != nil && *it.Stock == 0 {
			return outOfStock // as read: no need to wait for the row
		}
		// As read, for a message that says how much: the ledger's balance
		// row decides under concurrency.
		if bal, err := balanceOf(ctx, tx, p.TenantID, p.UserID); err != nil {
			return err
		} else if bal.Spendable < it.Cost {
			return failed("INSUFFICIENT_POINTS", "this reward costs %d points and you have %d to spend", it.Cost, bal.Spendable)
		}
		st, err := settings(ctx, tx, p.TenantID)
		if err != nil {
			return err
		}
		var currency string
		if err := tx.QueryRow(ctx, `SELECT currency FROM tenants WHERE id = $1`, p.TenantID).Scan(&currency); err != nil {
			return fmt.Errorf("read currency: %w", err)
		}
		value := it.Cost * 100 / int64(st.PointsPerUnit)
		if it.MoneyValue != nil {
			value = *it.MoneyValue
		}
		state := RedemptionApproved
		if it.ApprovalRequired {
			state = RedemptionPending
		}
		// From here the item's row is locked until commit: the stock taken,
		// the redemption written, the points spent, the change announced.
		b := &pgx.Batch{}
		taken := true
		b.Queue(`UPDATE reward_items SET stock = stock - 1, updated_at = $3
			WHERE tenant_id = $1 AND id = $2 AND stock IS NOT NULL AND stock > 0`, p.TenantID, it.ID, now).Exec(func(tag pgconn.CommandTag) error {
			taken = tag.RowsAffected() == 1 || it.Stock == nil
			return nil
		})
		b.Queue(`INSERT INTO redemptions (tenant_id, id, item_id, user_id, state, cost, money_value, currency,
				item_name_fr, item_name_en, requested_at, updated_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11)`,
			p.TenantID, id, it.ID, p.UserID, state, it.Cost, value, currency, it.Name.FR, it.Name.EN, now)
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return fmt.Errorf("take from stock: %w", err)
		}
		if !taken {
			return outOfStock
		}
		if err := s.record(ctx, tx, p.TenantID, []leaderboard.Entry{{
			Key: "redemption:" + id.String(), UserID: p.UserID, Points: -it.Cost, At: now, Reason: "redemption",
			Kind: leaderboard.EntryRedemption, Cause: cause{RedemptionID: id, ItemID: it.ID, Label: &it.Name}.json(),
		}}); err != nil {
			return err
		}
		out = Redemption{ID: id, ItemID: it.ID, UserID: p.UserID, Person: who.DisplayName, State: state, Cost: it.Cost,
			MoneyValue: value, Currency: currency, Item: it.Name, RequestedAt: now, UpdatedAt: now}
		return s.announceRedemption(ctx, tx, p.TenantID, out, "", false, uuid.Nil, "")
	})
	return out, err
}

func (s *Service) announceRedemption(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, r Redemption, from RedemptionState,
	refunded bool, byID uuid.UUID, by string) error {
	return outbox.Append(ctx, tx, outbox.Message{TenantID: tenantID, Kind: MessageRedemptionChanged,
		Key: fmt.Sprintf("redemption:%s:%s", r.ID, r.State), Subjects: []uuid.UUID{r.UserID, r.ItemID}, OccurredAt: s.now(),
		Payload: RedemptionChanged{RedemptionID: r.ID, ItemID: r.ItemID, Item: r.Item, UserID: r.UserID, From: from, To: r.State,
			Cost: r.Cost, Refunded: refunded, ByID: byID, By: by, Note: r.Note}})
}

// Decision is what a caller does with a redemption.
type Decision string

// Decisions.
const (
	Approve Decision = "approve"
	Reject  Decision = "reject"
	Cancel  Decision = "cancel"
	Fulfill Decision = "fulfill"
)

var decisionTarget = map[Decision]RedemptionState{
	Approve: RedemptionApproved, Reject: RedemptionRejected, Cancel: RedemptionCancelled, Fulfill: RedemptionFulfilled,
}

// maxNoteLen bounds a decision's note.
const maxNoteLen = 500

// Decide moves a redemption on: a manager of the person's teams (or an
// admin) approves or rejects a pending one; the person cancels their pending
// one, an admin any pending or approved one; an admin marks an approved one
// fulfilled. Rejecting and cancelling refund the points and return the item
// to stock. Deciding again what was decided changes nothing.
//
// Errors: CodeNotFound for a redemption the caller may not see;
// CodePermissionDenied for a decision the caller may not take (a manager on
// their own redemption: SELF_APPROVAL); CodeFailedPrecondition when the
// state forbids it (WRONG_STATE); CodeInvalid for a note over 500
// characters.
func (s *Service) Decide(ctx context.Context, p rallye.Principal, id uuid.UUID, d Decision, note string) (Redemption, error) {
	to, ok := decisionTarget[d]
	if !ok {
		return Redemption{}, rallye.Invalid("decision", "unknown decision %q", d)
	}
	note = strings.TrimSpace(note)
	if len([]rune(note)) > maxNoteLen {
		return Redemption{}, rallye.Invalid("note", "must be at most %d characters", maxNoteLen)
	}
	var out Redemption
	err := s.inTenant(ctx, p.TenantID, func(ctx context.Context, tx pgx.Tx) error {
		r, err := getRedemption(ctx, tx, p.TenantID, id, true)
		if err != nil {
			return err
		}
		owner, err := personOf(ctx, tx, p.TenantID, r.UserID)
		if err != nil {
			return err
		}
		a := &access{p: p}
		visible, err := a.canRead(ctx, tx, owner)
		if err != nil {
			return err
		}
		if !visible {
			return rallye.NotFound("redemption")
		}
		if r.State == to {
			out = r
			return nil
		}
		admin := p.Has(rallye.RoleAdmin)
		switch d {
		case Approve, Reject:
			manages, err := a.manages(ctx, tx, owner)
			if err != nil {
				return err
			}
			switch {
			case !manages:
				return denied("the person's managers and admins decide redemptions")
			case p.UserID == r.UserID && !admin:
				return &rallye.Error{Code: rallye.CodePermissionDenied, Reason: "SELF_APPROVAL", Message: "another manager decides your own redemptions"}
			case r.State != RedemptionPending:
				return failed("WRONG_STATE", "the redemption is %s, not pending", r.State)
			}
		case Cancel:
			switch {
			case !admin && p.UserID != r.UserID:
				return denied("the person and admins cancel a redemption")
			case r.State == RedemptionPending, admin && r.State == RedemptionApproved:
			default:
				return failed("WRONG_STATE", "a %s redemption cannot be cancelled", r.State)
			}
		case Fulfill:
			switch {
			case !admin:
				return denied("admins mark redemptions fulfilled")
			case r.State != RedemptionApproved:
				return failed("WRONG_STATE", "the redemption is %s, not approved", r.State)
			}
		}
		now := s.now()
		var by string
		if p.IsPerson() {
			if err := tx.QueryRow(ctx, `SELECT display_name FROM users WHERE tenant_id = $1 AND id = $2`, p.TenantID, p.UserID).Scan(&by); err != nil {
				return fmt.Errorf("read caller: %w", err)
			}
		}
		if d == Fulfill {
			_, err = tx.Exec(ctx, `UPDATE redemptions SET state = 'fulfilled', fulfilled_by = $3, fulfilled_at = $4,
				note = CASE WHEN $5 = '' THEN note ELSE $5 END, updated_at = $4 WHERE tenant_id = $1 AND id = $2`,
				p.TenantID, id, nullID(p.UserID), now, note)
		} else {
			_, err = tx.Exec(ctx, `UPDATE redemptions SET state = $3, decided_by = $4, decided_at = $5,
				note = CASE WHEN $6 = '' THEN note ELSE $6 END, updated_at = $5 WHERE tenant_id = $1 AND id = $2`,
				p.TenantID, id, to, nullID(p.UserID), now, note)
		}
		if err != nil {
			return fmt.Errorf("decide redemption: %w", err)
		}
		refund := to == RedemptionRejected || to == RedemptionCancelled
		if refund {
			if _, err := tx.Exec(ctx, `UPDATE reward_items SET stock = stock + 1, updated_at = $3
				WHERE tenant_id = $1 AND id = $2 AND stock IS NOT NULL`, p.TenantID, r.ItemID, now); err != nil {
				return fmt.Errorf("return to stock: %w", err)
			}
			if err := s.record(ctx, tx, p.TenantID, []leaderboard.Entry{{
				Key: "refund:" + id.String(), UserID: r.UserID, Points: r.Cost, At: now, Reason: "refund",
				Kind: leaderboard.EntryRefund, Cause: cause{RedemptionID: id, ItemID: r.ItemID, Label: &r.Item, State: string(to),
					ByID: p.UserID, By: by}.json(),
			}}); err != nil {
				return err
			}
		}
		if out, err = getRedemption(ctx, tx, p.TenantID, id, false); err != nil {
			return err
		}
		return s.announceRedemption(ctx, tx, p.TenantID, out, r.State, refund, p.UserID, by)
	})
	return out, err
}

// ListRedemptionsRequest selects a page of redemptions, newest first.
type ListRedemptionsRequest struct {
	// UserID: one person's (uuid.Nil: every one the caller may see).
	UserID uuid.UUID
	// State: "" for every state.
	State  RedemptionState
	Size   int
	Cursor page.Cursor
}

// ListRedemptions lists the redemptions the caller may see: their own for a
// rep, also their teams' for a manager (what they approve), all for HR and
// admins.
func (s *Service) ListRedemptions(ctx context.Context, p rallye.Principal, req ListRedemptionsRequest) ([]Redemption, error) {
	if req.Size <= 0 {
		req.Size = DefaultItemsPage
	}
	req.Size = min(req.Size, MaxItemsPage)
	var out []Redemption
	err := s.db.ReadTenant(ctx, p.TenantID, func(tx pgx.Tx) error {
		a := &access{p: p}
		var users []uuid.UUID // nil: everyone
		switch {
		case req.UserID != uuid.Nil:
			if _, err := a.subject(ctx, tx, req.UserID); err != nil {
				return err
			}
			users = []uuid.UUID{req.UserID}
		case p.Has(rallye.RoleAdmin, rallye.RoleHR):
		case p.Has(rallye.RoleManager):
			managed, err := a.managedTeams(ctx, tx)
			if err != nil {
				return err
			}
			rows, err := tx.Query(ctx, `SELECT DISTINCT user_id FROM team_members WHERE tenant_id = $1 AND team_id = ANY($2)
				UNION SELECT $3::uuid`, p.TenantID, managed, p.UserID)
			if err != nil {
				return err
			}
			if users, err = pgx.CollectRows(rows, pgx.RowTo[uuid.UUID]); err != nil {
				return err
			}
		default:
			users = []uuid.UUID{p.UserID}
		}
		before := req.Cursor.After
		if before == uuid.Nil {
			before = uuid.Max
		}
		rows, err := tx.Query(ctx, `SELECT `+redemptionColumns+redemptionFrom+`
			WHERE r.tenant_id = $1 AND r.id < $2 AND ($3 = '' OR r.state = $3) AND ($4::uuid[] IS NULL OR r.user_id = ANY($4))
			ORDER BY r.id DESC LIMIT $5`, p.TenantID, before, string(req.State), users, req.Size)
		if err != nil {
			return fmt.Errorf("list redemptions: %w", err)
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Redemption, error) { return scanRedemption(r) })
		return err
	})
	return out, err
}

// ExportRow is a fulfilled redemption as payroll and gift-card vendors read
// it.
type ExportRow struct {
	RedemptionID uuid.UUID
	FulfilledAt  time.Time
	// PersonCRMID is the person's external id (the CRM's).
	PersonCRMID string
	Person      string
	Email       string
	Item        Text
	Cost        int64
	// MoneyValue in minor units of Currency.
	MoneyValue int64
	Currency   string
	// ApprovedBy is the approver's name ("" when the item needed none).
	ApprovedBy string
}

// MaxExportWindow bounds an export's period.
const MaxExportWindow = 366 * 24 * time.Hour

// ExportFulfilled calls fn with each redemption fulfilled in [from, to), in
// fulfilment order, reading rows as fn consumes them (admins).
//
// Errors: CodeInvalid for a window that is empty or longer than 366 days.
func (s *Service) ExportFulfilled(ctx context.Context, p rallye.Principal, from, to time.Time, fn func(ExportRow) error) error {
	if !p.Has(rallye.RoleAdmin) {
		return denied("only admins export redemptions")
	}
	switch {
	case from.IsZero() || to.IsZero():
		return rallye.Invalid("from", "from and to are required")
	case !to.After(from):
		return rallye.Invalid("to", "must be after from")
	case to.Sub(from) > MaxExportWindow:
		return rallye.Invalid("to", "an export covers at most 366 days")
	}
	return s.db.ReadTenant(ctx, p.TenantID, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT r.id, r.fulfilled_at, coalesce(u.external_id, ''), u.display_name, u.email,
				r.item_name_fr, r.item_name_en, r.cost, r.money_value, r.currency, coalesce(d.display_name, '')
			FROM redemptions r
			JOIN users u ON u.tenant_id = r.tenant_id AND u.id = r.user_id
			LEFT JOIN users d ON d.tenant_id = r.tenant_id AND d.id = r.decided_by
			WHERE r.tenant_id = $1 AND r.state = 'fulfilled' AND r.fulfilled_at >= $2 AND r.fulfilled_at < $3
			ORDER BY r.fulfilled_at, r.id`, p.TenantID, from, to)
		if err != nil {
			return fmt.Errorf("export redemptions: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var e ExportRow
			if err := rows.Scan(&e.RedemptionID, &e.FulfilledAt, &e.PersonCRMID, &e.Person, &e.Email, &e.Item.FR, &e.Item.EN,
				&e.Cost, &e.MoneyValue, &e.Currency, &e.ApprovedBy); err != nil {
				return fmt.Errorf("export redemptions: %w", err)
			}
			if err := fn(e); err != nil {
				return err
			}
		}
		return rows.Err()
	})
}
