// Package dashboard serves the seed article's three dashboard levels from
// the KPI roll-ups: level 1 for the company, level 2 per team, segment and
// stage, level 3 per person; and live updates (Watch) fanned out across
// server instances through Redis pub/sub.
package dashboard

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/rallyehq/rallye/internal/kpi"
	"github.com/rallyehq/rallye/internal/org"
	"github.com/rallyehq/rallye/internal/period"
	"github.com/rallyehq/rallye/internal/postgres"
	"github.com/rallyehq/rallye/internal/rallye"
)

// Service reads dashboards.
type Service struct {
	db  *postgres.DB
	kpi *kpi.Service
	org *org.Service
	hub *Hub
	log *slog.Logger
	// Coalesce is how long Watch gathers changes before recomputing.
	Coalesce time.Duration
	// Refresh is how often Watch recomputes its board without changes
	// (projections and stocks move with time).
	Refresh time.Duration

	stopping  chan struct{}
	closeOnce sync.Once
}

// Close ends the Watch streams (the server is shutting down: clients
// reconnect to another instance). Reads keep working.
func (s *Service) Close() { s.closeOnce.Do(func() { close(s.stopping) }) }

// NewService returns the dashboard service.
func NewService(db *postgres.DB, k *kpi.Service, o *org.Service, hub *Hub, log *slog.Logger) *Service {
	return &Service{db: db, kpi: k, org: o, hub: hub, log: log, Coalesce: 100 * time.Millisecond, Refresh: time.Minute,
		stopping: make(chan struct{})}
}

// Request selects a board.
type Request struct {
	// Kind is the period kind (default month).
	Kind period.Kind
	// At picks the period containing it (default now).
	At           time.Time
	SeriesLength int
	// TeamID: level 2's team; level 3's roster.
	TeamID uuid.UUID
	// UserID: level 3's person (default the caller).
	UserID uuid.UUID
}

// Row is one team's or person's values in a table.
type Row struct {
	ID     uuid.UUID
	Name   string
	Values []RowValue
}

// RowValue is one KPI in a row.
type RowValue struct {
	Key             string
	Value, Previous *float64
	Status          kpi.Status
	// NotApplicable: the KPI has no meaning for this row's scope.
	NotApplicable bool
	// Period is the period of Value (Previous is the one before).
	Period period.Period
	// Unavailable: the KPI is not read over the requested period kind.
	Unavailable bool
}

// Board is a dashboard.
type Board struct {
	Level int
	Scope kpi.ScopeRef
	Cards []kpi.Card
	// Teams are level 2's sub-team rows; People level 3's roster.
	Teams    []Row
	People   []Row
	TimeZone string
	Currency string
	// Freshness says how far the roll-ups had got when the board was read.
	Freshness kpi.Freshness
}

// plan is a resolved request: what to read, for which scope.
type plan struct {
	level int
	scope kpi.ScopeRef
	// roster is level 3's team (rows per member), rows level 2's sub-teams.
	roster uuid.UUID
	keys   []string
}

func (s *Service) resolve(ctx context.Context, p rallye.Principal, level int, req Request) (plan, error) {
	pl := plan{level: level, scope: kpi.Company}
	aud, err := s.kpi.AudienceOf(ctx, p)
	if err != nil {
		return pl, err
	}
	switch level {
	case 1:
		if !aud.All && !aud.Manager {
			return pl, rallye.Errorf(rallye.CodePermissionDenied, "level 1 is for managers, HR and admins")
		}
	case 2:
		switch {
		case req.TeamID != uuid.Nil:
			if err := s.teamExists(ctx, p.TenantID, req.TeamID); err != nil {
				return pl, err
			}
			if !aud.Sees(kpi.ScopeRef{Kind: kpi.ScopeTeam, ID: req.TeamID}) {
				return pl, rallye.Errorf(rallye.CodePermissionDenied, "this team is not one of yours")
			}
			pl.scope = kpi.ScopeRef{Kind: kpi.ScopeTeam, ID: req.TeamID}
		case !aud.All:
			return pl, rallye.Invalid("team_id", "is required: managers read level 2 for one of their teams")
		}
	case 3:
		switch {
		case req.TeamID != uuid.Nil && req.UserID != uuid.Nil:
			return pl, rallye.Invalid("team_id", "name a person or a team, not both")
		case req.TeamID != uuid.Nil:
			if err := s.teamExists(ctx, p.TenantID, req.TeamID); err != nil {
				return pl, err
			}
			if !aud.Sees(kpi.ScopeRef{Kind: kpi.ScopeTeam, ID: req.TeamID}) {
				return pl, rallye.Errorf(rallye.CodePermissionDenied, "this team is not one of yours")
			}
			pl.roster = req.TeamID
		default:
			user := req.UserID
			if user == uuid.Nil {
				if !p.IsPerson() {
					return pl, rallye.Invalid("user_id", "is required for an API key")
				}
				user = p.UserID
			}
			if _, err := s.org.User(ctx, p, user); err != nil {
				return pl, err
			}
			if !aud.Sees(kpi.ScopeRef{Kind: kpi.ScopePerson, ID: user}) {
				return pl, rallye.Errorf(rallye.CodePermissionDenied, "you may not read this person's dashboard")
			}
			pl.scope = kpi.ScopeRef{Kind: kpi.ScopePerson, ID: user}
		}
	default:
		return pl, rallye.Invalid("level", "must be 1, 2 or 3")
	}
	pl.keys, err = s.kpi.KeysOfLevel(ctx, p.TenantID, level)
	return pl, err
}

func (s *Service) teamExists(ctx context.Context, tenantID, id uuid.UUID) error {
	return s.db.ReadTenant(ctx, tenantID, func(tx pgx.Tx) error {
		var ok bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM teams WHERE tenant_id = $1 AND id = $2)`, tenantID, id).Scan(&ok); err != nil {
			return err
		}
		if !ok {
			return rallye.NotFound("team")
		}
		return nil
	})
}

// Level1 returns the company's level-1 board.
func (s *Service) Level1(ctx context.Context, p rallye.Principal, req Request) (Board, error) {
	return s.board(ctx, p, 1, req)
}

// Level2 returns a level-2 board for the company or a team, with a row per
// sub-team.
func (s *Service) Level2(ctx context.Context, p rallye.Principal, req Request) (Board, error) {
	return s.board(ctx, p, 2, req)
}

// Level3 returns a person's level-3 board, or a team's roster.
func (s *Service) Level3(ctx context.Context, p rallye.Principal, req Request) (Board, error) {
	return s.board(ctx, p, 3, req)
}

func (s *Service) board(ctx context.Context, p rallye.Principal, level int, req Request) (Board, error) {
	pl, err := s.resolve(ctx, p, level, req)
	if err != nil {
		return Board{}, err
	}
	return s.read(ctx, p, pl, req, pl.keys)
}

func kindOf(req Request) period.Kind {
	if req.Kind == "" {
		return period.Month
	}
	return req.Kind
}

// read computes a resolved board for keys.
func (s *Service) read(ctx context.Context, p rallye.Principal, pl plan, req Request, keys []string) (Board, error) {
	tenant, err := s.org.Tenant(ctx, p)
	if err != nil {
		return Board{}, err
	}
	// Read before the values, so that they hold at least what it says.
	fresh, err := s.kpi.Freshness(ctx, p.TenantID)
	if err != nil {
		return Board{}, err
	}
	b := Board{Level: pl.level, Scope: pl.scope, TimeZone: tenant.TimeZone, Currency: tenant.Currency, Freshness: fresh}
	cr := kpi.CardsRequest{Keys: keys, Kind: kindOf(req), At: req.At, SeriesLength: req.SeriesLength}
	if pl.roster == uuid.Nil {
		cr.Scopes = []kpi.ScopeRef{pl.scope}
		cards, err := s.kpi.Cards(ctx, p.TenantID, cr)
		if err != nil {
			return b, err
		}
		b.Cards = cards[0]
	}
	var rows []Row
	var scopes []kpi.ScopeRef
	switch {
	case pl.level == 2:
		rows, err = s.subTeams(ctx, p.TenantID, pl.scope.ID)
		for _, r := range rows {
			scopes = append(scopes, kpi.ScopeRef{Kind: kpi.ScopeTeam, ID: r.ID})
		}
	case pl.roster != uuid.Nil:
		rows, err = s.members(ctx, p.TenantID, pl.roster)
		for _, r := range rows {
			scopes = append(scopes, kpi.ScopeRef{Kind: kpi.ScopePerson, ID: r.ID})
		}
	}
	if err != nil || len(rows) == 0 {
		return b, err
	}
	cr.Scopes, cr.SeriesLength = scopes, 2
	cards, err := s.kpi.Cards(ctx, p.TenantID, cr)
	if err != nil {
		return b, err
	}
	for i := range rows {
		for _, c := range cards[i] {
			rows[i].Values = append(rows[i].Values, RowValue{Key: c.KPI.Key, Value: c.Value.Value, Previous: c.Previous, Status: c.Status,
				NotApplicable: c.Value.NotApplicable, Period: c.Period, Unavailable: c.Unavailable})
		}
	}
	if pl.level == 2 {
		b.Teams = rows
	} else {
		b.People = rows
	}
	return b, nil
}

// subTeams returns the active teams right below parent (the top-level ones
// for uuid.Nil).
func (s *Service) subTeams(ctx context.Context, tenantID, parent uuid.UUID) ([]Row, error) {
	var out []Row
	err := s.db.ReadTenant(ctx, tenantID, func(tx pgx.Tx) error {
		var p *uuid.UUID
		if parent != uuid.Nil {
			p = &parent
		}
		rows, err := tx.Query(ctx, `SELECT id, name FROM teams WHERE tenant_id = $1 AND active
			AND parent_id IS NOT DISTINCT FROM $2 ORDER BY name, id`, tenantID, p)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Row, error) {
			var row Row
			return row, r.Scan(&row.ID, &row.Name)
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("sub-teams: %w", err)
	}
	return out, nil
}

// members returns the active members of a team and its sub-teams.
func (s *Service) members(ctx context.Context, tenantID, team uuid.UUID) ([]Row, error) {
	var out []Row
	err := s.db.ReadTenant(ctx, tenantID, func(tx pgx.Tx) error {
		teams, err := org.TeamAndDescendants(ctx, tx, tenantID, []uuid.UUID{team})
		if err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT DISTINCT u.id, u.display_name FROM team_members m
			JOIN users u ON u.tenant_id = m.tenant_id AND u.id = m.user_id
			WHERE m.tenant_id = $1 AND m.team_id = ANY($2) AND u.active ORDER BY u.display_name, u.id`, tenantID, teams)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Row, error) {
			var row Row
			return row, r.Scan(&row.ID, &row.Name)
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("team members: %w", err)
	}
	slices.SortStableFunc(out, func(a, b Row) int {
		if a.Name < b.Name {
			return -1
		}
		if a.Name > b.Name {
			return 1
		}
		return 0
	})
	return out, nil
}
