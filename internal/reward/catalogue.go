package reward

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/rallyehq/rallye/internal/idempotency"
	"github.com/rallyehq/rallye/internal/page"
	"github.com/rallyehq/rallye/internal/postgres"
	"github.com/rallyehq/rallye/internal/rallye"
)

// Item is a reward of the catalogue.
type Item struct {
	ID          uuid.UUID
	Name        Text
	Description Text
	ImageURL    string
	// Cost in spendable points.
	Cost int64
	// Stock is nil when unlimited.
	Stock *int
	// PerPersonLimit bounds the redemptions a person holds (pending,
	// approved or fulfilled); 0: no limit.
	PerPersonLimit   int
	ApprovalRequired bool
	// ActiveFrom and ActiveUntil bound when it may be redeemed (zero:
	// open).
	ActiveFrom, ActiveUntil time.Time
	// TeamIDs: visible to these teams and their sub-teams only (empty:
	// everyone).
	TeamIDs []uuid.UUID
	// MoneyValue is in minor units of the company's currency (nil: the
	// cost divided by the company's points_per_unit).
	MoneyValue *int64
	Archived   bool
	CreatedAt  time.Time
	UpdatedAt  time.Time
}

// Available reports whether the item may be redeemed at t (stock aside
// from per-person limits).
func (it Item) Available(t time.Time) bool {
	return !it.Archived && (it.ActiveFrom.IsZero() || !t.Before(it.ActiveFrom)) &&
		(it.ActiveUntil.IsZero() || t.Before(it.ActiveUntil)) && (it.Stock == nil || *it.Stock > 0)
}

// ItemInput is what an item is created or changed with.
type ItemInput struct {
	Name, Description       Text
	ImageURL                string
	Cost                    int64
	Stock                   *int
	PerPersonLimit          int
	ApprovalRequired        bool
	ActiveFrom, ActiveUntil time.Time
	TeamIDs                 []uuid.UUID
	MoneyValue              *int64
}

// Item limits.
const (
	maxItemName      = 80
	maxItemDesc      = 1000
	maxURLLen        = 500
	MaxCost          = 10_000_000
	MaxStock         = 1_000_000
	MaxPerPerson     = 1000
	MaxMoneyValue    = 100_000_000
	maxItemTeams     = 50
	DefaultItemsPage = 50
	MaxItemsPage     = 200
)

const itemColumns = `id, name_fr, name_en, description_fr, description_en, image_url, cost, stock, per_person_limit,
	approval_required, active_from, active_until, team_ids, money_value, archived_at IS NOT NULL, created_at, updated_at`

func scanItem(r pgx.Row) (Item, error) {
	var it Item
	var from, until *time.Time
	err := r.Scan(&it.ID, &it.Name.FR, &it.Name.EN, &it.Description.FR, &it.Description.EN, &it.ImageURL, &it.Cost,
		&it.Stock, &it.PerPersonLimit, &it.ApprovalRequired, &from, &until, &it.TeamIDs, &it.MoneyValue, &it.Archived,
		&it.CreatedAt, &it.UpdatedAt)
	if from != nil {
		it.ActiveFrom = *from
	}
	if until != nil {
		it.ActiveUntil = *until
	}
	return it, err
}

func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func checkURL(field, s string) error {
	if s == "" {
		return nil
	}
	u, err := url.Parse(s)
	if err != nil || len(s) > maxURLLen || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return rallye.Invalid(field, "must be an http(s) link of at most %d characters", maxURLLen)
	}
	return nil
}

func checkItem(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, in ItemInput) error {
	if err := checkText("item.name", in.Name, true, maxItemName); err != nil {
		return err
	}
	if err := checkText("item.description", in.Description, false, maxItemDesc); err != nil {
		return err
	}
	if err := checkURL("item.image_url", in.ImageURL); err != nil {
		return err
	}
	switch {
	case in.Cost < 1 || in.Cost > MaxCost:
		return rallye.Invalid("item.cost", "must be between 1 and %d points", MaxCost)
	case in.Stock != nil && (*in.Stock < 0 || *in.Stock > MaxStock):
		return rallye.Invalid("item.stock", "must be between 0 and %d", MaxStock)
	case in.PerPersonLimit < 0 || in.PerPersonLimit > MaxPerPerson:
		return rallye.Invalid("item.per_person_limit", "must be between 0 and %d", MaxPerPerson)
	case !in.ActiveFrom.IsZero() && !in.ActiveUntil.IsZero() && !in.ActiveUntil.After(in.ActiveFrom):
		return rallye.Invalid("item.active_until", "must be after active_from")
	case in.MoneyValue != nil && (*in.MoneyValue < 0 || *in.MoneyValue > MaxMoneyValue):
		return rallye.Invalid("item.money_value", "must be between 0 and %d (minor units)", MaxMoneyValue)
	case len(in.TeamIDs) > maxItemTeams:
		return rallye.Invalid("item.team_ids", "at most %d teams", maxItemTeams)
	}
	if len(in.TeamIDs) > 0 {
		var n int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM teams WHERE tenant_id = $1 AND id = ANY($2)`, tenantID, in.TeamIDs).Scan(&n); err != nil {
			return fmt.Errorf("check teams: %w", err)
		}
		if n != len(in.TeamIDs) {
			return &rallye.Error{Code: rallye.CodeNotFound, Field: "item.team_ids", Message: "team not found"}
		}
	}
	return nil
}

func uniqueSorted(ids []uuid.UUID) []uuid.UUID {
	out := slices.Clone(ids)
	slices.SortFunc(out, func(a, b uuid.UUID) int { return strings.Compare(a.String(), b.String()) })
	out = slices.Compact(out)
	if out == nil {
		out = []uuid.UUID{}
	}
	return out
}

// CreateItem adds a reward to the catalogue (admins). Retrying with the same
// request id returns the same item.
//
// Errors: CodeInvalid naming the field; CodeNotFound for a team not in the
// company.
func (s *Service) CreateItem(ctx context.Context, p rallye.Principal, in ItemInput, requestID string) (Item, error) {
	if !p.Has(rallye.RoleAdmin) {
		return Item{}, denied("only admins manage the catalogue")
	}
	in.TeamIDs = uniqueSorted(in.TeamIDs)
	var out Item
	err := s.db.InTenant(ctx, p.TenantID, func(tx pgx.Tx) error {
		if err := checkItem(ctx, tx, p.TenantID, in); err != nil {
			return err
		}
		id, fresh, err := idempotency.Claim(ctx, tx, idempotency.Key{Caller: p, Operation: "CreateRewardItem",
			RequestID: requestID, Request: in}, newID())
		if err != nil {
			return err
		}
		if !fresh {
			out, err = getItem(ctx, tx, p.TenantID, id, false)
			return err
		}
		out, err = scanItem(tx.QueryRow(ctx, `INSERT INTO reward_items (tenant_id, id, name_fr, name_en, description_fr,
				description_en, image_url, cost, stock, per_person_limit, approval_required, active_from, active_until,
				team_ids, money_value, created_by, created_at, updated_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $17)
			RETURNING `+itemColumns,
			p.TenantID, id, strings.TrimSpace(in.Name.FR), strings.TrimSpace(in.Name.EN), in.Description.FR, in.Description.EN,
			in.ImageURL, in.Cost, in.Stock, in.PerPersonLimit, in.ApprovalRequired, nullTime(in.ActiveFrom),
			nullTime(in.ActiveUntil), in.TeamIDs, in.MoneyValue, nullID(p.UserID), s.now()))
		if err != nil {
			return fmt.Errorf("create item: %w", err)
		}
		return nil
	})
	return out, err
}

func getItem(ctx context.Context, tx pgx.Tx, tenantID, id uuid.UUID, lock bool) (Item, error) {
	q := `SELECT ` + itemColumns + ` FROM reward_items WHERE tenant_id = $1 AND id = $2`
	if lock {
		q += ` FOR UPDATE`
	}
	it, err := scanItem(tx.QueryRow(ctx, q, tenantID, id))
	if postgres.IsNoRows(err) {
		return Item{}, rallye.NotFound("reward")
	}
	if err != nil {
		return Item{}, fmt.Errorf("read item: %w", err)
	}
	return it, nil
}

// ItemFields are the mask paths UpdateItem knows.
var ItemFields = []string{"name", "description", "image_url", "cost", "stock", "per_person_limit", "approval_required",
	"active_from", "active_until", "team_ids", "money_value", "archived"}

// ItemPatch changes the fields Mask names (ItemFields): stock sets the
// remaining stock (nil: unlimited); archived withdraws the item from the
// catalogue (redemptions in progress go on).
type ItemPatch struct {
	ItemInput
	Archived bool
	Mask     []string
}

// UpdateItem changes an item (admins). Errors: CodeInvalid naming the
// field; CodeNotFound.
func (s *Service) UpdateItem(ctx context.Context, p rallye.Principal, id uuid.UUID, patch ItemPatch) (Item, error) {
	if !p.Has(rallye.RoleAdmin) {
		return Item{}, denied("only admins manage the catalogue")
	}
	var out Item
	err := s.db.InTenant(ctx, p.TenantID, func(tx pgx.Tx) error {
		cur, err := getItem(ctx, tx, p.TenantID, id, true)
		if err != nil {
			return err
		}
		in := ItemInput{Name: cur.Name, Description: cur.Description, ImageURL: cur.ImageURL, Cost: cur.Cost, Stock: cur.Stock,
			PerPersonLimit: cur.PerPersonLimit, ApprovalRequired: cur.ApprovalRequired, ActiveFrom: cur.ActiveFrom,
			ActiveUntil: cur.ActiveUntil, TeamIDs: cur.TeamIDs, MoneyValue: cur.MoneyValue}
		archived := cur.Archived
		for _, f := range patch.Mask {
			switch f {
			case "name":
				in.Name = patch.Name
			case "description":
				in.Description = patch.Description
			case "image_url":
				in.ImageURL = patch.ImageURL
			case "cost":
				in.Cost = patch.Cost
			case "stock":
				in.Stock = patch.Stock
			case "per_person_limit":
				in.PerPersonLimit = patch.PerPersonLimit
			case "approval_required":
				in.ApprovalRequired = patch.ApprovalRequired
			case "active_from":
				in.ActiveFrom = patch.ActiveFrom
			case "active_until":
				in.ActiveUntil = patch.ActiveUntil
			case "team_ids":
				in.TeamIDs = uniqueSorted(patch.TeamIDs)
			case "money_value":
				in.MoneyValue = patch.MoneyValue
			case "archived":
				archived = patch.Archived
			default:
				return rallye.Invalid("update_mask", "%q is not an item field", f)
			}
		}
		if err := checkItem(ctx, tx, p.TenantID, in); err != nil {
			return err
		}
		out, err = scanItem(tx.QueryRow(ctx, `UPDATE reward_items SET name_fr = $3, name_en = $4, description_fr = $5,
				description_en = $6, image_url = $7, cost = $8, stock = $9, per_person_limit = $10, approval_required = $11,
				active_from = $12, active_until = $13, team_ids = $14, money_value = $15,
				archived_at = CASE WHEN $16 THEN coalesce(archived_at, $17) END, updated_at = $17
			WHERE tenant_id = $1 AND id = $2 RETURNING `+itemColumns,
			p.TenantID, id, strings.TrimSpace(in.Name.FR), strings.TrimSpace(in.Name.EN), in.Description.FR, in.Description.EN,
			in.ImageURL, in.Cost, in.Stock, in.PerPersonLimit, in.ApprovalRequired, nullTime(in.ActiveFrom), nullTime(in.ActiveUntil),
			in.TeamIDs, in.MoneyValue, archived, s.now()))
		if err != nil {
			return fmt.Errorf("update item: %w", err)
		}
		return nil
	})
	return out, err
}

// visibleTeams returns the teams whose items a person sees: theirs and
// every team above them.
func visibleTeams(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, teams []uuid.UUID) ([]uuid.UUID, error) {
	if len(teams) == 0 {
		return []uuid.UUID{}, nil
	}
	rows, err := tx.Query(ctx, `WITH RECURSIVE up AS (
			SELECT id, parent_id FROM teams WHERE tenant_id = $1 AND id = ANY($2)
			UNION
			SELECT t.id, t.parent_id FROM teams t JOIN up ON t.tenant_id = $1 AND t.id = up.parent_id
		) SELECT id FROM up`, tenantID, teams)
	if err != nil {
		return nil, fmt.Errorf("read teams above: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
}

// seesAll reports whether the caller sees every item (admins and HR).
func seesAll(p rallye.Principal) bool { return p.Has(rallye.RoleAdmin, rallye.RoleHR) }

func itemVisible(it Item, visible []uuid.UUID) bool {
	if len(it.TeamIDs) == 0 {
		return true
	}
	for _, t := range it.TeamIDs {
		if slices.Contains(visible, t) {
			return true
		}
	}
	return false
}

// callerTeams returns the teams whose items the caller sees (nil: all).
func callerTeams(ctx context.Context, tx pgx.Tx, p rallye.Principal) ([]uuid.UUID, error) {
	if seesAll(p) {
		return nil, nil
	}
	if !p.IsPerson() {
		return []uuid.UUID{}, nil
	}
	who, err := personOf(ctx, tx, p.TenantID, p.UserID)
	if err != nil {
		return nil, err
	}
	return visibleTeams(ctx, tx, p.TenantID, who.TeamIDs)
}

// GetItem returns an item the caller may see. Errors: CodeNotFound (an item
// of another company, or not visible to the caller's teams, or archived for
// all but admins and HR).
func (s *Service) GetItem(ctx context.Context, p rallye.Principal, id uuid.UUID) (Item, error) {
	var out Item
	err := s.db.ReadTenant(ctx, p.TenantID, func(tx pgx.Tx) error {
		it, err := getItem(ctx, tx, p.TenantID, id, false)
		if err != nil {
			return err
		}
		teams, err := callerTeams(ctx, tx, p)
		if err != nil {
			return err
		}
		if teams != nil && (it.Archived || !itemVisible(it, teams)) {
			return rallye.NotFound("reward")
		}
		out = it
		return nil
	})
	return out, err
}

// ListItemsRequest selects a page of the catalogue.
type ListItemsRequest struct {
	// IncludeUnavailable adds archived items (admins and HR).
	IncludeUnavailable bool
	Size               int
	Cursor             page.Cursor
}

// ListItems lists the items the caller sees, in creation order: for people,
// the items of their teams (and of the teams above) that are not archived,
// available now or not (Item.Available); admins and HR see every item, and
// the archived ones with IncludeUnavailable.
func (s *Service) ListItems(ctx context.Context, p rallye.Principal, req ListItemsRequest) ([]Item, error) {
	if req.Size <= 0 {
		req.Size = DefaultItemsPage
	}
	req.Size = min(req.Size, MaxItemsPage)
	var out []Item
	err := s.db.ReadTenant(ctx, p.TenantID, func(tx pgx.Tx) error {
		teams, err := callerTeams(ctx, tx, p)
		if err != nil {
			return err
		}
		all := teams == nil && req.IncludeUnavailable
		rows, err := tx.Query(ctx, `SELECT `+itemColumns+` FROM reward_items
			WHERE tenant_id = $1 AND id > $2
			  AND ($3 OR archived_at IS NULL)
			  AND ($4::uuid[] IS NULL OR team_ids = '{}' OR team_ids && $4)
			ORDER BY id LIMIT $5`, p.TenantID, req.Cursor.After, all, teams, req.Size)
		if err != nil {
			return fmt.Errorf("list items: %w", err)
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Item, error) { return scanItem(r) })
		return err
	})
	return out, err
}
