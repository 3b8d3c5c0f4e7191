package reward

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/rallyehq/rallye/internal/event"
	"github.com/rallyehq/rallye/internal/idempotency"
	"github.com/rallyehq/rallye/internal/outbox"
	"github.com/rallyehq/rallye/internal/page"
	"github.com/rallyehq/rallye/internal/postgres"
	"github.com/rallyehq/rallye/internal/rallye"
)

// CriterionKind says how a badge is earned.
type CriterionKind string

// Criterion kinds. Each is evaluated when what it reads changes (the change
// feed, challenge results, mission completions, levels, kudos), never by a
// periodic scan.
const (
	// CriterionActivity: Threshold events of EventTypes (Measure count),
	// or Threshold units of currency of their amount (Measure amount),
	// within one Period ("all_time", "day", "week", "month", "quarter" in
	// the person's time zone): "first deal won", "50,000 EUR signed in a
	// month" (a KPI threshold over a period).
	CriterionActivity CriterionKind = "activity"
	// CriterionMissions: Threshold missions completed, in any challenge.
	CriterionMissions CriterionKind = "missions_completed"
	// CriterionChallengeRank: a final rank of MaxRank or better with
	// points (1: winner, 3: podium), in challenges of ChallengeKind (any
	// when empty).
	CriterionChallengeRank CriterionKind = "challenge_rank"
	// CriterionChallengeCompleted: every mission of a challenge of
	// ChallengeKind completed ("onboarding completed").
	CriterionChallengeCompleted CriterionKind = "challenge_completed"
	// CriterionStreak: a streak of Threshold working days (or weeks) of
	// the streak rule StreakKey (any rule when empty).
	CriterionStreak CriterionKind = "streak"
	// CriterionLevel: level Threshold reached.
	CriterionLevel CriterionKind = "level"
	// CriterionKudos: Threshold kudos received.
	CriterionKudos CriterionKind = "kudos_received"
	// CriterionChallengeReward: awarded only by challenge reward rules that
	// name the badge.
	CriterionChallengeReward CriterionKind = "challenge_reward"
)

// Criterion is a badge's rule, as data.
type Criterion struct {
	Kind          CriterionKind `json:"kind"`
	EventTypes    []string      `json:"event_types,omitempty"`
	Measure       string        `json:"measure,omitempty"`
	Period        string        `json:"period,omitempty"`
	Threshold     int64         `json:"threshold,omitempty"`
	ChallengeKind string        `json:"challenge_kind,omitempty"`
	MaxRank       int           `json:"max_rank,omitempty"`
	StreakKey     string        `json:"streak,omitempty"`
}

// Badge is a company's badge.
type Badge struct {
	ID          uuid.UUID
	Key         string
	Name        Text
	Description Text
	IconURL     string
	Criterion   Criterion
	Active      bool
	// Builtin: one of Rallye's default badges.
	Builtin   bool
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Award is a badge a person holds.
type Award struct {
	Badge     Badge
	UserID    uuid.UUID
	Person    string
	AwardedAt time.Time
	// Source is "criterion", or the key of the challenge grant that
	// awarded it.
	Source string
}

// DefaultBadges are installed in every company on first use (keys it has
// are left alone).
var DefaultBadges = []Badge{
	{Key: "first-deal", Name: Text{FR: "Première affaire", EN: "First deal"},
		Description: Text{FR: "Une première affaire gagnée.", EN: "A first deal won."},
		Criterion:   Criterion{Kind: CriterionActivity, EventTypes: []string{string(event.DealWon)}, Measure: "count", Period: "all_time", Threshold: 1}},
	{Key: "big-month", Name: Text{FR: "Mois record", EN: "Record month"},
		Description: Text{FR: "50 000 de chiffre d'affaires gagné dans le mois.", EN: "50,000 of revenue won in a month."},
		Criterion:   Criterion{Kind: CriterionActivity, EventTypes: []string{string(event.DealWon)}, Measure: "amount", Period: "month", Threshold: 50000}},
	{Key: "missions-10", Name: Text{FR: "10 missions", EN: "10 missions"},
		Description: Text{FR: "Dix missions accomplies.", EN: "Ten missions completed."},
		Criterion:   Criterion{Kind: CriterionMissions, Threshold: 10}},
	{Key: "challenge-winner", Name: Text{FR: "Vainqueur", EN: "Challenge winner"},
		Description: Text{FR: "Premier d'un challenge.", EN: "First of a challenge."},
		Criterion:   Criterion{Kind: CriterionChallengeRank, MaxRank: 1}},
	{Key: "podium", Name: Text{FR: "Podium", EN: "Podium"},
		Description: Text{FR: "Dans les trois premiers d'un challenge.", EN: "In the top three of a challenge."},
		Criterion:   Criterion{Kind: CriterionChallengeRank, MaxRank: 3}},
	{Key: "streak-5", Name: Text{FR: "Série de 5", EN: "5-day streak"},
		Description: Text{FR: "Cinq jours ouvrés d'affilée à l'objectif.", EN: "Five working days in a row on target."},
		Criterion:   Criterion{Kind: CriterionStreak, Threshold: 5}},
	{Key: "onboarding-complete", Name: Text{FR: "Onboarding réussi", EN: "Onboarding complete"},
		Description: Text{FR: "Toutes les missions d'un onboarding accomplies.", EN: "Every mission of an onboarding completed."},
		Criterion:   Criterion{Kind: CriterionChallengeCompleted, ChallengeKind: "onboarding"}},
	{Key: "team-player", Name: Text{FR: "Esprit d'équipe", EN: "Team player"},
		Description: Text{FR: "Cinq kudos reçus.", EN: "Five kudos received."},
		Criterion:   Criterion{Kind: CriterionKudos, Threshold: 5}},
	{Key: "upsell-trophy", Name: Text{FR: "Trophée upsell", EN: "Upsell trophy"},
		Description: Text{FR: "Premier d'un challenge upsell.", EN: "First of an upsell challenge."},
		Criterion:   Criterion{Kind: CriterionChallengeReward}},
	{Key: "upsell-podium", Name: Text{FR: "Podium upsell", EN: "Upsell podium"},
		Description: Text{FR: "Sur le podium d'un challenge upsell.", EN: "On the podium of an upsell challenge."},
		Criterion:   Criterion{Kind: CriterionChallengeReward}},
	{Key: "upsell-ace", Name: Text{FR: "As de l'upsell", EN: "Upsell ace"},
		Description: Text{FR: "500 points dans un challenge upsell.", EN: "500 points in an upsell challenge."},
		Criterion:   Criterion{Kind: CriterionChallengeReward}},
	{Key: "prospecting-podium", Name: Text{FR: "Podium prospection", EN: "Prospecting podium"},
		Description: Text{FR: "Sur le podium d'un challenge de prospection.", EN: "On the podium of a prospecting challenge."},
		Criterion:   Criterion{Kind: CriterionChallengeReward}},
}

var (
	keyPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)
	periods    = []string{"all_time", "day", "week", "month", "quarter"}
)

// Badge limits.
const (
	maxBadgeName   = 60
	maxBadgeDesc   = 300
	maxEventTypes  = 10
	MaxThreshold   = 1_000_000_000
	DefaultHolders = 100
	MaxHolders     = 500
)

func checkCriterion(c Criterion) error {
	f := "badge.criterion."
	switch c.Kind {
	case CriterionActivity:
		if len(c.EventTypes) == 0 || len(c.EventTypes) > maxEventTypes {
			return rallye.Invalid(f+"event_types", "must list 1 to %d event types", maxEventTypes)
		}
		for i, t := range c.EventTypes {
			if !slices.Contains(event.Types(), event.Type(t)) {
				return rallye.Invalid(fmt.Sprintf("%sevent_types[%d]", f, i), "%q is not an event type", t)
			}
		}
		if c.Measure != "count" && c.Measure != "amount" {
			return rallye.Invalid(f+"measure", "must be count or amount")
		}
		if !slices.Contains(periods, c.Period) {
			return rallye.Invalid(f+"period", "must be one of %s", strings.Join(periods, ", "))
		}
	case CriterionMissions, CriterionStreak, CriterionLevel, CriterionKudos:
	case CriterionChallengeRank:
		if c.MaxRank < 1 || c.MaxRank > 100 {
			return rallye.Invalid(f+"max_rank", "must be between 1 and 100")
		}
	case CriterionChallengeCompleted:
		if c.ChallengeKind == "" {
			return rallye.Invalid(f+"challenge_kind", "is required")
		}
	case CriterionChallengeReward:
		return nil
	default:
		return rallye.Invalid(f+"kind", "%q is not a criterion", c.Kind)
	}
	if c.Kind != CriterionChallengeRank && c.Kind != CriterionChallengeCompleted && (c.Threshold < 1 || c.Threshold > MaxThreshold) {
		return rallye.Invalid(f+"threshold", "must be between 1 and %d", MaxThreshold)
	}
	if c.StreakKey != "" && !keyPattern.MatchString(c.StreakKey) {
		return rallye.Invalid(f+"streak", "must be a streak rule key")
	}
	return nil
}

const badgeColumns = `id, key, name_fr, name_en, description_fr, description_en, icon_url, criterion, active, builtin, created_at, updated_at`

func scanBadge(r pgx.Row) (Badge, error) {
	var b Badge
	var crit []byte
	if err := r.Scan(&b.ID, &b.Key, &b.Name.FR, &b.Name.EN, &b.Description.FR, &b.Description.EN, &b.IconURL, &crit,
		&b.Active, &b.Builtin, &b.CreatedAt, &b.UpdatedAt); err != nil {
		return b, err
	}
	return b, json.Unmarshal(crit, &b.Criterion)
}

// ensureBadges installs the default badges the company lacks (a company
// never deletes a badge, it deactivates it: counting them is enough).
func ensureBadges(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID) error {
	var n int
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM badges WHERE tenant_id = $1 AND builtin`, tenantID).Scan(&n); err != nil {
		return fmt.Errorf("count default badges: %w", err)
	}
	if n >= len(DefaultBadges) {
		return nil
	}
	b := &pgx.Batch{}
	for _, d := range DefaultBadges {
		crit, _ := json.Marshal(d.Criterion)
		b.Queue(`INSERT INTO badges (tenant_id, id, key, name_fr, name_en, description_fr, description_en, criterion, builtin)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, true) ON CONFLICT (tenant_id, key) DO NOTHING`,
			tenantID, newID(), d.Key, d.Name.FR, d.Name.EN, d.Description.FR, d.Description.EN, crit)
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("install default badges: %w", err)
	}
	return nil
}

// activeBadges reads the company's active badges of some criterion kinds.
func activeBadges(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, kinds ...CriterionKind) ([]Badge, error) {
	if err := ensureBadges(ctx, tx, tenantID); err != nil {
		return nil, err
	}
	ks := make([]string, len(kinds))
	for i, k := range kinds {
		ks[i] = string(k)
	}
	rows, err := tx.Query(ctx, `SELECT `+badgeColumns+` FROM badges WHERE tenant_id = $1 AND active AND criterion->>'kind' = ANY($2)
		ORDER BY key`, tenantID, ks)
	if err != nil {
		return nil, fmt.Errorf("read badges: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Badge, error) { return scanBadge(r) })
}

// award gives a person a badge, once: the first time it inserts the award,
// a team-feed entry and (queued on w) the badge.earned message.
func (w *work) award(b Badge, who person, at time.Time, source string) error {
	tag, err := w.tx.Exec(w.ctx, `INSERT INTO badge_awards (tenant_id, badge_id, user_id, awarded_at, source)
		VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING`, w.tenant, b.ID, who.ID, at, source)
	if err != nil {
		return fmt.Errorf("award badge: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return nil // kept once earned: nothing to do
	}
	if err := w.feed(feedEntry{Kind: FeedBadge, UserID: who.ID, TeamIDs: who.TeamIDs, At: at,
		Key:  fmt.Sprintf("badge:%s:%s", b.ID, who.ID),
		Data: feedData{BadgeID: b.ID, Badge: &b.Name}}); err != nil {
		return err
	}
	w.announce(outbox.Message{Kind: MessageBadgeEarned, Key: fmt.Sprintf("badge:%s:%s", b.ID, who.ID),
		Subjects: []uuid.UUID{who.ID, b.ID}, OccurredAt: at,
		Payload: BadgeEarned{UserID: who.ID, BadgeID: b.ID, Key: b.Key, Name: b.Name, IconURL: b.IconURL, Source: source, EarnedAt: at}})
	return nil
}

// badgeByKey returns the company's badge with a key; a key it has not
// defined (a challenge reward naming a badge of its own) becomes a badge
// named after label.
func (w *work) badgeByKey(key string, label Text) (Badge, error) {
	if err := ensureBadges(w.ctx, w.tx, w.tenant); err != nil {
		return Badge{}, err
	}
	crit, _ := json.Marshal(Criterion{Kind: CriterionChallengeReward})
	if label.FR == "" && label.EN == "" {
		label = Text{FR: key, EN: key}
	}
	b, err := scanBadge(w.tx.QueryRow(w.ctx, `WITH ins AS (
			INSERT INTO badges (tenant_id, id, key, name_fr, name_en, criterion)
			VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tenant_id, key) DO NOTHING RETURNING `+badgeColumns+`
		) SELECT * FROM ins UNION ALL SELECT `+badgeColumns+` FROM badges WHERE tenant_id = $1 AND key = $3 LIMIT 1`,
		w.tenant, newID(), key, label.In("fr"), label.In("en"), crit))
	if err != nil {
		return Badge{}, fmt.Errorf("read badge %s: %w", key, err)
	}
	return b, nil
}

// BadgeInput is what a badge is created or changed with.
type BadgeInput struct {
	Key               string
	Name, Description Text
	IconURL           string
	Criterion         Criterion
	Active            bool
}

func checkBadge(in BadgeInput) error {
	if !keyPattern.MatchString(in.Key) {
		return rallye.Invalid("badge.key", "must be lowercase letters, digits and dashes (at most 63)")
	}
	if err := checkText("badge.name", in.Name, true, maxBadgeName); err != nil {
		return err
	}
	if err := checkText("badge.description", in.Description, false, maxBadgeDesc); err != nil {
		return err
	}
	if err := checkURL("badge.icon_url", in.IconURL); err != nil {
		return err
	}
	return checkCriterion(in.Criterion)
}

// CreateBadge defines a badge (admins). Retrying with the same request id
// returns the same badge.
//
// Errors: CodeInvalid naming the field; CodeAlreadyExists for a key taken.
func (s *Service) CreateBadge(ctx context.Context, p rallye.Principal, in BadgeInput, requestID string) (Badge, error) {
	if !p.Has(rallye.RoleAdmin) {
		return Badge{}, denied("only admins define badges")
	}
	in.Active = true
	if err := checkBadge(in); err != nil {
		return Badge{}, err
	}
	var out Badge
	err := s.db.InTenant(ctx, p.TenantID, func(tx pgx.Tx) error {
		if err := ensureBadges(ctx, tx, p.TenantID); err != nil {
			return err
		}
		id, fresh, err := idempotency.Claim(ctx, tx, idempotency.Key{Caller: p, Operation: "CreateBadge",
			RequestID: requestID, Request: in}, newID())
		if err != nil {
			return err
		}
		if !fresh {
			out, err = getBadge(ctx, tx, p.TenantID, id)
			return err
		}
		crit, _ := json.Marshal(in.Criterion)
		out, err = scanBadge(tx.QueryRow(ctx, `INSERT INTO badges (tenant_id, id, key, name_fr, name_en, description_fr,
				description_en, icon_url, criterion) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING `+badgeColumns,
			p.TenantID, id, in.Key, strings.TrimSpace(in.Name.FR), strings.TrimSpace(in.Name.EN), in.Description.FR,
			in.Description.EN, in.IconURL, crit))
		if postgres.IsUniqueViolation(err, "badges_tenant_id_key_key") {
			return &rallye.Error{Code: rallye.CodeAlreadyExists, Field: "badge.key", Message: "is taken by another badge"}
		}
		return err
	})
	return out, err
}

func getBadge(ctx context.Context, tx pgx.Tx, tenantID, id uuid.UUID) (Badge, error) {
	b, err := scanBadge(tx.QueryRow(ctx, `SELECT `+badgeColumns+` FROM badges WHERE tenant_id = $1 AND id = $2`, tenantID, id))
	if postgres.IsNoRows(err) {
		return Badge{}, rallye.NotFound("badge")
	}
	if err != nil {
		return Badge{}, fmt.Errorf("read badge: %w", err)
	}
	return b, nil
}

// BadgePatch changes the fields Mask names: name, description, icon_url,
// criterion, active. A badge's key never changes; a deactivated badge is
// no longer awarded (those who hold it keep it).
type BadgePatch struct {
	BadgeInput
	Mask []string
}

// UpdateBadge changes a badge (admins). Errors: CodeInvalid; CodeNotFound.
func (s *Service) UpdateBadge(ctx context.Context, p rallye.Principal, id uuid.UUID, patch BadgePatch) (Badge, error) {
	if !p.Has(rallye.RoleAdmin) {
		return Badge{}, denied("only admins define badges")
	}
	var out Badge
	err := s.db.InTenant(ctx, p.TenantID, func(tx pgx.Tx) error {
		cur, err := getBadge(ctx, tx, p.TenantID, id)
		if err != nil {
			return err
		}
		in := BadgeInput{Key: cur.Key, Name: cur.Name, Description: cur.Description, IconURL: cur.IconURL,
			Criterion: cur.Criterion, Active: cur.Active}
		for _, f := range patch.Mask {
			switch f {
			case "name":
				in.Name = patch.Name
			case "description":
				in.Description = patch.Description
			case "icon_url":
				in.IconURL = patch.IconURL
			case "criterion":
				in.Criterion = patch.Criterion
			case "active":
				in.Active = patch.Active
			default:
				return rallye.Invalid("update_mask", "%q is not a badge field", f)
			}
		}
		if err := checkBadge(in); err != nil {
			return err
		}
		crit, _ := json.Marshal(in.Criterion)
		out, err = scanBadge(tx.QueryRow(ctx, `UPDATE badges SET name_fr = $3, name_en = $4, description_fr = $5,
				description_en = $6, icon_url = $7, criterion = $8, active = $9, updated_at = now()
			WHERE tenant_id = $1 AND id = $2 RETURNING `+badgeColumns,
			p.TenantID, id, strings.TrimSpace(in.Name.FR), strings.TrimSpace(in.Name.EN), in.Description.FR,
			in.Description.EN, in.IconURL, crit, in.Active))
		return err
	})
	return out, err
}

// ListBadges lists the company's badges by key; inactive ones only for
// admins asking for them.
func (s *Service) ListBadges(ctx context.Context, p rallye.Principal, includeInactive bool) ([]Badge, error) {
	var out []Badge
	err := s.db.InTenant(ctx, p.TenantID, func(tx pgx.Tx) error {
		if err := ensureBadges(ctx, tx, p.TenantID); err != nil {
			return err
		}
		all := includeInactive && p.Has(rallye.RoleAdmin)
		rows, err := tx.Query(ctx, `SELECT `+badgeColumns+` FROM badges WHERE tenant_id = $1 AND ($2 OR active) ORDER BY key`,
			p.TenantID, all)
		if err != nil {
			return fmt.Errorf("list badges: %w", err)
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Badge, error) { return scanBadge(r) })
		return err
	})
	return out, err
}

// UserBadges lists the badges a person holds, newest first: their profile
// (colleagues see each other's badges). Errors: CodeNotFound for someone
// not in the company.
func (s *Service) UserBadges(ctx context.Context, p rallye.Principal, userID uuid.UUID) ([]Award, error) {
	if userID == uuid.Nil {
		if !p.IsPerson() {
			return nil, rallye.Invalid("user_id", "is required for an API key")
		}
		userID = p.UserID
	}
	var out []Award
	err := s.db.ReadTenant(ctx, p.TenantID, func(tx pgx.Tx) error {
		who, err := personOf(ctx, tx, p.TenantID, userID)
		if err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT `+prefixed("b.", badgeColumns)+`, a.awarded_at, a.source
			FROM badge_awards a JOIN badges b ON b.tenant_id = a.tenant_id AND b.id = a.badge_id
			WHERE a.tenant_id = $1 AND a.user_id = $2 ORDER BY a.awarded_at DESC, b.key LIMIT 1000`, p.TenantID, userID)
		if err != nil {
			return fmt.Errorf("list awards: %w", err)
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Award, error) {
			a := Award{UserID: userID, Person: who.DisplayName}
			var crit []byte
			err := r.Scan(&a.Badge.ID, &a.Badge.Key, &a.Badge.Name.FR, &a.Badge.Name.EN, &a.Badge.Description.FR,
				&a.Badge.Description.EN, &a.Badge.IconURL, &crit, &a.Badge.Active, &a.Badge.Builtin, &a.Badge.CreatedAt,
				&a.Badge.UpdatedAt, &a.AwardedAt, &a.Source)
			if err == nil {
				err = json.Unmarshal(crit, &a.Badge.Criterion)
			}
			return a, err
		})
		return err
	})
	return out, err
}

func prefixed(prefix, columns string) string {
	parts := strings.Split(columns, ",")
	for i, c := range parts {
		parts[i] = prefix + strings.TrimSpace(c)
	}
	return strings.Join(parts, ", ")
}

// BadgeHoldersRequest selects who holds a badge.
type BadgeHoldersRequest struct {
	BadgeID uuid.UUID
	// TeamID narrows to a team and its sub-teams (uuid.Nil: every team the
	// caller sees).
	TeamID uuid.UUID
	Size   int
	Cursor page.Cursor
}

// BadgeHolders lists who holds a badge, by person id: in the manager's teams
// (and sub-teams), or in the company for HR and admins.
//
// Errors: CodeNotFound for a badge or team not in the company;
// CodePermissionDenied for a manager naming a team that is not theirs.
func (s *Service) BadgeHolders(ctx context.Context, p rallye.Principal, req BadgeHoldersRequest) (Badge, []Award, error) {
	if req.Size <= 0 {
		req.Size = DefaultHolders
	}
	req.Size = min(req.Size, MaxHolders)
	var b Badge
	var out []Award
	err := s.db.ReadTenant(ctx, p.TenantID, func(tx pgx.Tx) error {
		var err error
		if b, err = getBadge(ctx, tx, p.TenantID, req.BadgeID); err != nil {
			return err
		}
		var teams []uuid.UUID // nil: everyone
		if req.TeamID != uuid.Nil {
			var ok bool
			if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM teams WHERE tenant_id = $1 AND id = $2)`, p.TenantID, req.TeamID).Scan(&ok); err != nil {
				return err
			}
			if !ok {
				return rallye.NotFound("team")
			}
			if teams, err = teamAndBelow(ctx, tx, p.TenantID, req.TeamID); err != nil {
				return err
			}
		}
		if !p.Has(rallye.RoleAdmin, rallye.RoleHR) {
			a := &access{p: p}
			managed, err := a.managedTeams(ctx, tx)
			if err != nil {
				return err
			}
			if teams == nil {
				teams = managed
			} else if req.TeamID != uuid.Nil && !slices.Contains(managed, req.TeamID) {
				return denied("managers see the badges of their own teams")
			}
			if teams == nil {
				teams = []uuid.UUID{}
			}
		}
		rows, err := tx.Query(ctx, `SELECT a.user_id, u.display_name, a.awarded_at, a.source
			FROM badge_awards a JOIN users u ON u.tenant_id = a.tenant_id AND u.id = a.user_id
			WHERE a.tenant_id = $1 AND a.badge_id = $2 AND a.user_id > $3
			  AND ($4::uuid[] IS NULL OR EXISTS (SELECT 1 FROM team_members m
				WHERE m.tenant_id = a.tenant_id AND m.user_id = a.user_id AND m.team_id = ANY($4)))
			ORDER BY a.user_id LIMIT $5`, p.TenantID, b.ID, req.Cursor.After, teams, req.Size)
		if err != nil {
			return fmt.Errorf("list holders: %w", err)
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Award, error) {
			a := Award{Badge: b}
			err := r.Scan(&a.UserID, &a.Person, &a.AwardedAt, &a.Source)
			return a, err
		})
		return err
	})
	return b, out, err
}

func teamAndBelow(ctx context.Context, tx pgx.Tx, tenantID, team uuid.UUID) ([]uuid.UUID, error) {
	rows, err := tx.Query(ctx, `WITH RECURSIVE down AS (
			SELECT id FROM teams WHERE tenant_id = $1 AND id = $2
			UNION
			SELECT t.id FROM teams t JOIN down ON t.tenant_id = $1 AND t.parent_id = down.id
		) SELECT id FROM down`, tenantID, team)
	if err != nil {
		return nil, fmt.Errorf("read teams below: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
}
