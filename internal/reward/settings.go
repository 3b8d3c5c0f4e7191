package reward

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/rallyehq/rallye/internal/postgres"
	"github.com/rallyehq/rallye/internal/rallye"
)

// Level is a step of the ladder: reached at Min lifetime points.
type Level struct {
	// Number counts from 1.
	Number int   `json:"-"`
	Min    int64 `json:"min"`
	Name   Text  `json:"name"`
}

// Settings are a company's reward rules.
type Settings struct {
	// Levels, by Min; the first is at 0.
	Levels []Level
	// PointsPerUnit is how many points one unit of the company's currency
	// is worth: the money value of a redemption whose item has none (for
	// payroll and gift-card vendors).
	PointsPerUnit int
	// MaxManualGrant caps the points a manager grants at once.
	MaxManualGrant int64
	// KudosAllowance is the points each person may give with kudos per
	// calendar month (0: kudos carry no points).
	KudosAllowance int64
	// Weekend are the non-working weekdays.
	Weekend []time.Weekday
	// StreakRiskHour is the local hour after which a daily streak still
	// unmet today is announced at risk.
	StreakRiskHour int
}

// DefaultLevels is the ladder of a company that set none.
var DefaultLevels = []Level{
	{Number: 1, Min: 0, Name: Text{FR: "Débutant", EN: "Rookie"}},
	{Number: 2, Min: 250, Name: Text{FR: "Challenger", EN: "Challenger"}},
	{Number: 3, Min: 750, Name: Text{FR: "Confirmé", EN: "Performer"}},
	{Number: 4, Min: 1500, Name: Text{FR: "Expert", EN: "Expert"}},
	{Number: 5, Min: 3000, Name: Text{FR: "Champion", EN: "Champion"}},
	{Number: 6, Min: 6000, Name: Text{FR: "Légende", EN: "Legend"}},
}

// DefaultSettings are the rules of a company that set none.
func DefaultSettings() Settings {
	return Settings{
		Levels: slices.Clone(DefaultLevels), PointsPerUnit: 10, MaxManualGrant: 1000, KudosAllowance: 100,
		Weekend: []time.Weekday{time.Saturday, time.Sunday}, StreakRiskHour: 16,
	}
}

// Limits of the settings.
const (
	MaxLevels         = 20
	maxNameLen        = 60
	MaxPointsPerUnit  = 100_000
	MaxManualGrantCap = 1_000_000
	MaxKudosAllowance = 100_000
)

func isoDay(d time.Weekday) int16 {
	if d == time.Sunday {
		return 7
	}
	return int16(d)
}

func fromISODay(n int16) time.Weekday { return time.Weekday(n % 7) }

// settings reads a company's rules (the defaults when it set none).
func settings(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID) (Settings, error) {
	var st Settings
	b := &pgx.Batch{}
	queueSettings(b, tenantID, &st)
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return Settings{}, err
	}
	return st, nil
}

// queueSettings queues settings' query on a batch; dest is set when it
// runs.
func queueSettings(b *pgx.Batch, tenantID uuid.UUID, dest *Settings) {
	b.Queue(`SELECT levels, points_per_unit, max_manual_grant, kudos_allowance, weekend, streak_risk_hour
		FROM reward_settings WHERE tenant_id = $1`, tenantID).QueryRow(func(r pgx.Row) error {
		var levels []byte
		var weekend []int16
		st := DefaultSettings()
		err := r.Scan(&levels, &st.PointsPerUnit, &st.MaxManualGrant, &st.KudosAllowance, &weekend, &st.StreakRiskHour)
		if postgres.IsNoRows(err) {
			*dest = DefaultSettings()
			return nil
		}
		if err != nil {
			return fmt.Errorf("read reward settings: %w", err)
		}
		if err := json.Unmarshal(levels, &st.Levels); err != nil {
			return fmt.Errorf("read levels: %w", err)
		}
		for i := range st.Levels {
			st.Levels[i].Number = i + 1
		}
		st.Weekend = nil
		for _, d := range weekend {
			st.Weekend = append(st.Weekend, fromISODay(d))
		}
		*dest = st
		return nil
	})
}

// Settings returns the caller's company's reward rules.
func (s *Service) Settings(ctx context.Context, p rallye.Principal) (Settings, error) {
	var out Settings
	err := s.db.ReadTenant(ctx, p.TenantID, func(tx pgx.Tx) error {
		var err error
		out, err = settings(ctx, tx, p.TenantID)
		return err
	})
	return out, err
}

// SettingsPatch changes the fields Mask names: levels, points_per_unit,
// max_manual_grant, kudos_allowance, weekend_days, streak_risk_hour.
type SettingsPatch struct {
	Settings
	Mask []string
}

// UpdateSettings changes the company's reward rules (admins). Errors:
// CodeInvalid naming the field.
func (s *Service) UpdateSettings(ctx context.Context, p rallye.Principal, patch SettingsPatch) (Settings, error) {
	if !p.Has(rallye.RoleAdmin) {
		return Settings{}, denied("only admins set the reward rules")
	}
	var out Settings
	err := s.db.InTenant(ctx, p.TenantID, func(tx pgx.Tx) error {
		var err error
		out, err = updateSettings(ctx, tx, p, patch)
		return err
	})
	return out, err
}

func updateSettings(ctx context.Context, tx pgx.Tx, p rallye.Principal, patch SettingsPatch) (Settings, error) {
	cur, err := settings(ctx, tx, p.TenantID)
	if err != nil {
		return Settings{}, err
	}
	for _, f := range patch.Mask {
		switch f {
		case "levels":
			cur.Levels = patch.Levels
		case "points_per_unit":
			cur.PointsPerUnit = patch.PointsPerUnit
		case "max_manual_grant":
			cur.MaxManualGrant = patch.MaxManualGrant
		case "kudos_allowance":
			cur.KudosAllowance = patch.KudosAllowance
		case "weekend_days":
			cur.Weekend = patch.Weekend
		case "streak_risk_hour":
			cur.StreakRiskHour = patch.StreakRiskHour
		default:
			return Settings{}, rallye.Invalid("update_mask", "%q is not a settings field", f)
		}
	}
	if err := checkSettings(cur); err != nil {
		return Settings{}, err
	}
	levels, err := json.Marshal(cur.Levels)
	if err != nil {
		return Settings{}, err
	}
	weekend := make([]int16, len(cur.Weekend))
	for i, d := range cur.Weekend {
		weekend[i] = isoDay(d)
	}
	slices.Sort(weekend)
	_, err = tx.Exec(ctx, `INSERT INTO reward_settings (tenant_id, levels, points_per_unit, max_manual_grant,
			kudos_allowance, weekend, streak_risk_hour, updated_by, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now())
		ON CONFLICT (tenant_id) DO UPDATE SET levels = excluded.levels, points_per_unit = excluded.points_per_unit,
			max_manual_grant = excluded.max_manual_grant, kudos_allowance = excluded.kudos_allowance,
			weekend = excluded.weekend, streak_risk_hour = excluded.streak_risk_hour,
			updated_by = excluded.updated_by, updated_at = now()`,
		p.TenantID, levels, cur.PointsPerUnit, cur.MaxManualGrant, cur.KudosAllowance, weekend, cur.StreakRiskHour,
		nullID(p.UserID))
	if err != nil {
		return Settings{}, fmt.Errorf("write reward settings: %w", err)
	}
	return settings(ctx, tx, p.TenantID)
}

func checkText(field string, t Text, required bool, maxLen int) error {
	for _, x := range []struct{ lang, v string }{{"fr", t.FR}, {"en", t.EN}} {
		v := strings.TrimSpace(x.v)
		switch {
		case required && v == "":
			return rallye.Invalid(field+"."+x.lang, "is required")
		case len([]rune(x.v)) > maxLen:
			return rallye.Invalid(field+"."+x.lang, "must be at most %d characters", maxLen)
		}
	}
	return nil
}

func checkSettings(st Settings) error {
	switch {
	case len(st.Levels) == 0 || len(st.Levels) > MaxLevels:
		return rallye.Invalid("settings.levels", "must list 1 to %d levels", MaxLevels)
	case st.Levels[0].Min != 0:
		return rallye.Invalid("settings.levels[0].min_points", "the first level starts at 0")
	case st.PointsPerUnit < 1 || st.PointsPerUnit > MaxPointsPerUnit:
		return rallye.Invalid("settings.points_per_unit", "must be between 1 and %d", MaxPointsPerUnit)
	case st.MaxManualGrant < 1 || st.MaxManualGrant > MaxManualGrantCap:
		return rallye.Invalid("settings.max_manual_grant", "must be between 1 and %d", MaxManualGrantCap)
	case st.KudosAllowance < 0 || st.KudosAllowance > MaxKudosAllowance:
		return rallye.Invalid("settings.kudos_allowance", "must be between 0 and %d", MaxKudosAllowance)
	case len(st.Weekend) > 6:
		return rallye.Invalid("settings.weekend_days", "leave at least one working day")
	case st.StreakRiskHour < 0 || st.StreakRiskHour > 23:
		return rallye.Invalid("settings.streak_risk_hour", "must be between 0 and 23")
	}
	for i, l := range st.Levels {
		if i > 0 && l.Min <= st.Levels[i-1].Min {
			return rallye.Invalid(fmt.Sprintf("settings.levels[%d].min_points", i), "must be above the previous level's")
		}
		if err := checkText(fmt.Sprintf("settings.levels[%d].name", i), l.Name, true, maxNameLen); err != nil {
			return err
		}
	}
	seen := map[time.Weekday]bool{}
	for i, d := range st.Weekend {
		if d < time.Sunday || d > time.Saturday || seen[d] {
			return rallye.Invalid(fmt.Sprintf("settings.weekend_days[%d]", i), "must be distinct weekdays")
		}
		seen[d] = true
	}
	return nil
}

// Holiday is a company's non-working day.
type Holiday struct {
	// Day is the date, at midnight UTC.
	Day  time.Time
	Name string
}

// Calendar is a company's working days: the weekend and a year's holidays.
type Calendar struct {
	Weekend  []time.Weekday
	Year     int
	Holidays []Holiday
}

// MaxHolidays bounds a year's holidays.
const MaxHolidays = 60

// Calendar returns the company's weekend and holidays of a year.
func (s *Service) Calendar(ctx context.Context, p rallye.Principal, year int) (Calendar, error) {
	if year < 2000 || year > 2200 {
		return Calendar{}, rallye.Invalid("year", "must be between 2000 and 2200")
	}
	out := Calendar{Year: year}
	err := s.db.ReadTenant(ctx, p.TenantID, func(tx pgx.Tx) error {
		st, err := settings(ctx, tx, p.TenantID)
		if err != nil {
			return err
		}
		out.Weekend = st.Weekend
		out.Holidays, err = holidays(ctx, tx, p.TenantID, civil(year, 1, 1), civil(year+1, 1, 1))
		return err
	})
	return out, err
}

// SetCalendar sets the company's weekend and replaces a year's holidays
// (admins). Errors: CodeInvalid naming the field (a holiday outside the
// year, twice the same day, a weekend without working day).
func (s *Service) SetCalendar(ctx context.Context, p rallye.Principal, c Calendar) (Calendar, error) {
	if !p.Has(rallye.RoleAdmin) {
		return Calendar{}, denied("only admins set the working days")
	}
	if c.Year < 2000 || c.Year > 2200 {
		return Calendar{}, rallye.Invalid("year", "must be between 2000 and 2200")
	}
	if len(c.Holidays) > MaxHolidays {
		return Calendar{}, rallye.Invalid("holidays", "at most %d holidays a year", MaxHolidays)
	}
	seen := map[time.Time]bool{}
	for i, h := range c.Holidays {
		f := fmt.Sprintf("holidays[%d]", i)
		switch {
		case h.Day.Year() != c.Year:
			return Calendar{}, rallye.Invalid(f+".date", "is not in %d", c.Year)
		case seen[h.Day]:
			return Calendar{}, rallye.Invalid(f+".date", "is listed twice")
		case strings.TrimSpace(h.Name) == "" || len([]rune(h.Name)) > maxNameLen:
			return Calendar{}, rallye.Invalid(f+".name", "must be 1 to %d characters", maxNameLen)
		}
		seen[h.Day] = true
	}
	err := s.db.InTenant(ctx, p.TenantID, func(tx pgx.Tx) error {
		if _, err := updateSettings(ctx, tx, p, SettingsPatch{Settings: Settings{Weekend: c.Weekend}, Mask: []string{"weekend_days"}}); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM reward_holidays WHERE tenant_id = $1 AND day >= $2 AND day < $3`,
			p.TenantID, civil(c.Year, 1, 1), civil(c.Year+1, 1, 1)); err != nil {
			return fmt.Errorf("replace holidays: %w", err)
		}
		days := make([]time.Time, len(c.Holidays))
		names := make([]string, len(c.Holidays))
		for i, h := range c.Holidays {
			days[i], names[i] = h.Day, strings.TrimSpace(h.Name)
		}
		_, err := tx.Exec(ctx, `INSERT INTO reward_holidays (tenant_id, day, name) SELECT $1, d, n FROM unnest($2::date[], $3::text[]) AS x(d, n)`,
			p.TenantID, days, names)
		if err != nil {
			return fmt.Errorf("replace holidays: %w", err)
		}
		return nil
	})
	if err != nil {
		return Calendar{}, err
	}
	return s.Calendar(ctx, p, c.Year)
}

func holidays(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, from, to time.Time) ([]Holiday, error) {
	rows, err := tx.Query(ctx, `SELECT day, name FROM reward_holidays WHERE tenant_id = $1 AND day >= $2 AND day < $3 ORDER BY day`,
		tenantID, from, to)
	if err != nil {
		return nil, fmt.Errorf("read holidays: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Holiday, error) {
		var h Holiday
		err := r.Scan(&h.Day, &h.Name)
		h.Day = civilOf(h.Day)
		return h, err
	})
}

// civil returns a date as midnight UTC, the representation of days here.
func civil(y int, m time.Month, d int) time.Time { return time.Date(y, m, d, 0, 0, 0, 0, time.UTC) }

// civilOf keeps the date of t, at midnight UTC.
func civilOf(t time.Time) time.Time { return civil(t.Year(), t.Month(), t.Day()) }

// dayIn returns the local date of an instant in loc.
func dayIn(t time.Time, loc *time.Location) time.Time { return civilOf(t.In(loc)) }

// LevelOf returns the level of lifetime points, and the next level (nil at
// the top).
func LevelOf(levels []Level, lifetime int64) (Level, *Level) {
	cur := levels[0]
	for i, l := range levels {
		if lifetime >= l.Min {
			cur = l
			cur.Number = i + 1
			continue
		}
		next := l
		next.Number = i + 1
		return cur, &next
	}
	return cur, nil
}
