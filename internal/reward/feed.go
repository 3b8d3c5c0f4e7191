package reward

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/rallyehq/rallye/internal/challenge"
	"github.com/rallyehq/rallye/internal/i18n"
	"github.com/rallyehq/rallye/internal/page"
	"github.com/rallyehq/rallye/internal/rallye"
)

// FeedKind is what a team-feed entry tells.
type FeedKind string

// Team-feed kinds.
const (
	FeedWin             FeedKind = "win"
	FeedBadge           FeedKind = "badge"
	FeedLevel           FeedKind = "level"
	FeedChallengeResult FeedKind = "challenge_result"
	FeedKudos           FeedKind = "kudos"
)

// feedData is a feed entry's facts, rendered in the reader's language when
// read.
type feedData struct {
	// Win: a deal won.
	Amount   int64  `json:"amount,omitempty"`
	Currency string `json:"currency,omitempty"`
	Account  string `json:"account,omitempty"`
	// VersionID is the deal's event version the entry shows (a retraction
	// of that version hides it).
	VersionID uuid.UUID `json:"version_id,omitzero"`
	// Badge.
	BadgeID uuid.UUID `json:"badge_id,omitzero"`
	Badge   *Text     `json:"badge,omitempty"`
	// Level.
	Level     int   `json:"level,omitempty"`
	LevelName *Text `json:"level_name,omitempty"`
	// Challenge result.
	ChallengeID uuid.UUID                 `json:"challenge_id,omitzero"`
	Challenge   *Text                     `json:"challenge,omitempty"`
	Rank        int                       `json:"rank,omitempty"`
	Tied        bool                      `json:"tied,omitempty"`
	Rewards     []challenge.GrantedReward `json:"rewards,omitempty"`
	// Kudos.
	KudosID     uuid.UUID `json:"kudos_id,omitzero"`
	FromID      uuid.UUID `json:"from_id,omitzero"`
	From        string    `json:"from,omitempty"`
	Message     string    `json:"message,omitempty"`
	KudosPoints int64     `json:"kudos_points,omitempty"`
	WinID       uuid.UUID `json:"win_id,omitzero"`
}

type feedEntry struct {
	Kind    FeedKind
	UserID  uuid.UUID
	TeamIDs []uuid.UUID
	At      time.Time
	Key     string
	Data    feedData
}

// feed adds an entry to the team feed, once per key.
func (w *work) feed(e feedEntry) error {
	data, err := json.Marshal(e.Data)
	if err != nil {
		return err
	}
	teams := e.TeamIDs
	if teams == nil {
		teams = []uuid.UUID{}
	}
	if _, err := w.tx.Exec(w.ctx, `INSERT INTO reward_feed (tenant_id, id, kind, user_id, team_ids, data, occurred_at, key)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (tenant_id, key) DO NOTHING`,
		w.tenant, newID(), string(e.Kind), e.UserID, teams, data, e.At, e.Key); err != nil {
		return fmt.Errorf("add to team feed: %w", err)
	}
	return nil
}

// FeedItem is a team-feed entry as a reader sees it.
type FeedItem struct {
	ID     uuid.UUID
	Kind   FeedKind
	UserID uuid.UUID
	Person string
	At     time.Time
	// Text is the entry in the reader's language.
	Text string
	// Points: a win's amount is not points; kudos' and results' are.
	Points      int64
	ChallengeID uuid.UUID
	BadgeID     uuid.UUID
	KudosID     uuid.UUID
}

// ListFeedRequest selects a page of the team feed, newest first.
type ListFeedRequest struct {
	// TeamID narrows to a team and its sub-teams (uuid.Nil: the reader's
	// teams, managed teams for a manager, every team for HR and admins).
	TeamID uuid.UUID
	Size   int
	Cursor page.Cursor
}

// Feed page sizes.
const (
	DefaultFeedPage = 30
	MaxFeedPage     = 100
)

// Feed lists the team feed: recent wins, badges, levels, challenge results
// and kudos of the people of the reader's teams (and their own), newest
// first, in the reader's language.
//
// Errors: CodeNotFound for a team not in the company; CodePermissionDenied
// for a team the reader neither belongs to nor manages (HR and admins see
// every team).
func (s *Service) Feed(ctx context.Context, p rallye.Principal, req ListFeedRequest) ([]FeedItem, error) {
	if req.Size <= 0 {
		req.Size = DefaultFeedPage
	}
	req.Size = min(req.Size, MaxFeedPage)
	var out []FeedItem
	err := s.db.ReadTenant(ctx, p.TenantID, func(tx pgx.Tx) error {
		locale := "fr"
		var own []uuid.UUID
		if p.IsPerson() {
			me, err := personOf(ctx, tx, p.TenantID, p.UserID)
			if err != nil {
				return err
			}
			locale, own = me.Locale, me.TeamIDs
		}
		all := p.Has(rallye.RoleAdmin, rallye.RoleHR)
		var teams []uuid.UUID // nil: every team
		if !all {
			var err error
			if teams, err = visibleFeedTeams(ctx, tx, p, own); err != nil {
				return err
			}
		}
		if req.TeamID != uuid.Nil {
			var ok bool
			if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM teams WHERE tenant_id = $1 AND id = $2)`, p.TenantID, req.TeamID).Scan(&ok); err != nil {
				return err
			}
			if !ok {
				return rallye.NotFound("team")
			}
			if teams != nil && !slices.Contains(teams, req.TeamID) {
				return denied("the team feed shows your own teams")
			}
			below, err := teamAndBelow(ctx, tx, p.TenantID, req.TeamID)
			if err != nil {
				return err
			}
			teams = below
		}
		self := p.UserID
		if req.TeamID != uuid.Nil {
			self = uuid.Nil
		}
		before := req.Cursor.After
		if before == uuid.Nil {
			before = uuid.Max
		}
		rows, err := tx.Query(ctx, `SELECT f.id, f.kind, f.user_id, u.display_name, f.occurred_at, f.data
			FROM reward_feed f JOIN users u ON u.tenant_id = f.tenant_id AND u.id = f.user_id
			WHERE f.tenant_id = $1 AND f.id < $2 AND f.hidden_at IS NULL
			  AND ($3::uuid[] IS NULL OR f.team_ids && $3 OR f.user_id = $4)
			ORDER BY f.id DESC LIMIT $5`, p.TenantID, before, teams, self, req.Size)
		if err != nil {
			return fmt.Errorf("read team feed: %w", err)
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (FeedItem, error) {
			var it FeedItem
			var raw []byte
			if err := r.Scan(&it.ID, &it.Kind, &it.UserID, &it.Person, &it.At, &raw); err != nil {
				return it, err
			}
			var d feedData
			if err := json.Unmarshal(raw, &d); err != nil {
				return it, err
			}
			it.Text, it.Points = feedText(it.Kind, it.Person, d, locale)
			it.ChallengeID, it.BadgeID, it.KudosID = d.ChallengeID, d.BadgeID, d.KudosID
			return it, nil
		})
		return err
	})
	return out, err
}

// visibleFeedTeams returns the teams whose feed a person reads: theirs and,
// for a manager, the teams they manage (with sub-teams).
func visibleFeedTeams(ctx context.Context, tx pgx.Tx, p rallye.Principal, own []uuid.UUID) ([]uuid.UUID, error) {
	teams := slices.Clone(own)
	a := &access{p: p}
	managed, err := a.managedTeams(ctx, tx)
	if err != nil {
		return nil, err
	}
	teams = append(teams, managed...)
	if teams == nil {
		teams = []uuid.UUID{}
	}
	return teams, nil
}

// feedText renders an entry in locale, with the points it carries.
func feedText(kind FeedKind, who string, d feedData, locale string) (string, int64) {
	l := i18n.Normalize(locale)
	fr := l == i18n.FR
	q := func(s string) string { return i18n.Quote(s, l) }
	switch kind {
	case FeedWin:
		amount := i18n.Money(d.Amount, d.Currency, l)
		account := ""
		if d.Account != "" {
			account = " (" + d.Account + ")"
		}
		if fr {
			return i18n.Colon(who+" a gagné une affaire", l) + " " + amount + account, 0
		}
		return i18n.Colon(who+" won a deal", l) + " " + amount + account, 0
	case FeedBadge:
		name := ""
		if d.Badge != nil {
			name = d.Badge.In(l)
		}
		if fr {
			return who + " a obtenu le badge " + q(name), 0
		}
		return who + " earned the " + q(name) + " badge", 0
	case FeedLevel:
		name := ""
		if d.LevelName != nil {
			name = d.LevelName.In(l)
		}
		if fr {
			return i18n.Colon(fmt.Sprintf("%s passe au niveau %d", who, d.Level), l) + " " + name, 0
		}
		return i18n.Colon(fmt.Sprintf("%s reached level %d", who, d.Level), l) + " " + name, 0
	case FeedChallengeResult:
		name := ""
		if d.Challenge != nil {
			name = d.Challenge.In(l)
		}
		var points int64
		for _, r := range d.Rewards {
			points += r.Points
		}
		return who + ", " + name + " — " + challenge.ResultText(d.Rank, d.Tied, d.Rewards, l), points
	case FeedKudos:
		pts := ""
		if d.KudosPoints > 0 {
			pts = " (" + i18n.Points(d.KudosPoints, true, l) + ")"
		}
		if fr {
			return i18n.Colon(d.From+" félicite "+who, l) + " " + q(d.Message) + pts, d.KudosPoints
		}
		return i18n.Colon(d.From+" gave kudos to "+who, l) + " " + q(d.Message) + pts, d.KudosPoints
	}
	return string(kind), 0
}
