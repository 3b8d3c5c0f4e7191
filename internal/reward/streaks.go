package reward

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/rallyehq/rallye/internal/event"
	"github.com/rallyehq/rallye/internal/idempotency"
	"github.com/rallyehq/rallye/internal/outbox"
	"github.com/rallyehq/rallye/internal/postgres"
	"github.com/rallyehq/rallye/internal/rallye"
)

// StreakPeriod is what a streak counts: working days or weeks.
type StreakPeriod string

// Streak periods.
const (
	StreakDay  StreakPeriod = "day"
	StreakWeek StreakPeriod = "week"
)

// StreakRule is a company's activity goal: at least MinCount events of
// EventTypes per working day (or week), in the person's time zone.
type StreakRule struct {
	ID         uuid.UUID
	Key        string
	Name       Text
	EventTypes []string
	MinCount   int
	Period     StreakPeriod
	// FreezeEveryWeeks: a person may freeze one missed period per this
	// many weeks (0: no freeze).
	FreezeEveryWeeks int
	Active           bool
	CreatedAt        time.Time
	UpdatedAt        time.Time
}

// StreakRuleInput is what a rule is created or changed with.
type StreakRuleInput struct {
	Key              string
	Name             Text
	EventTypes       []string
	MinCount         int
	Period           StreakPeriod
	FreezeEveryWeeks int
	Active           bool
}

// Streak limits.
const (
	MaxMinCount      = 1000
	MaxFreezeWeeks   = 52
	MaxStreakRules   = 20
	maxStreakHistory = 3 * 366 // periods walked back at most
)

const streakColumns = `id, key, name_fr, name_en, event_types, min_count, period, freeze_every_weeks, active, created_at, updated_at`

func scanStreakRule(r pgx.Row) (StreakRule, error) {
	var s StreakRule
	err := r.Scan(&s.ID, &s.Key, &s.Name.FR, &s.Name.EN, &s.EventTypes, &s.MinCount, &s.Period, &s.FreezeEveryWeeks,
		&s.Active, &s.CreatedAt, &s.UpdatedAt)
	return s, err
}

func checkStreakRule(in StreakRuleInput) error {
	if !keyPattern.MatchString(in.Key) {
		return rallye.Invalid("rule.key", "must be lowercase letters, digits and dashes (at most 63)")
	}
	if err := checkText("rule.name", in.Name, true, maxNameLen); err != nil {
		return err
	}
	if len(in.EventTypes) == 0 || len(in.EventTypes) > maxEventTypes {
		return rallye.Invalid("rule.event_types", "must list 1 to %d event types", maxEventTypes)
	}
	for i, t := range in.EventTypes {
		if !slices.Contains(event.Types(), event.Type(t)) {
			return rallye.Invalid(fmt.Sprintf("rule.event_types[%d]", i), "%q is not an event type", t)
		}
	}
	switch {
	case in.MinCount < 1 || in.MinCount > MaxMinCount:
		return rallye.Invalid("rule.min_count", "must be between 1 and %d", MaxMinCount)
	case in.Period != StreakDay && in.Period != StreakWeek:
		return rallye.Invalid("rule.period", "must be day or week")
	case in.FreezeEveryWeeks < 0 || in.FreezeEveryWeeks > MaxFreezeWeeks:
		return rallye.Invalid("rule.freeze_every_weeks", "must be between 0 and %d", MaxFreezeWeeks)
	}
	return nil
}

// CreateStreakRule defines a streak (admins). Retrying with the same request
// id returns the same rule. Errors: CodeInvalid naming the field;
// CodeAlreadyExists for a key taken; CodeResourceExhausted beyond 20 rules.
func (s *Service) CreateStreakRule(ctx context.Context, p rallye.Principal, in StreakRuleInput, requestID string) (StreakRule, error) {
	if !p.Has(rallye.RoleAdmin) {
		return StreakRule{}, denied("only admins define streaks")
	}
	in.Active = true
	in.EventTypes = slices.Compact(slices.Sorted(slices.Values(in.EventTypes)))
	if err := checkStreakRule(in); err != nil {
		return StreakRule{}, err
	}
	var out StreakRule
	err := s.db.InTenant(ctx, p.TenantID, func(tx pgx.Tx) error {
		id, fresh, err := idempotency.Claim(ctx, tx, idempotency.Key{Caller: p, Operation: "CreateStreakRule",
			RequestID: requestID, Request: in}, newID())
		if err != nil {
			return err
		}
		if !fresh {
			out, err = getStreakRule(ctx, tx, p.TenantID, id)
			return err
		}
		var n int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM streak_rules WHERE tenant_id = $1`, p.TenantID).Scan(&n); err != nil {
			return err
		}
		if n >= MaxStreakRules {
			return &rallye.Error{Code: rallye.CodeResourceExhausted, Reason: "TOO_MANY_STREAKS", Message: fmt.Sprintf("a company has at most %d streak rules", MaxStreakRules)}
		}
		out, err = scanStreakRule(tx.QueryRow(ctx, `INSERT INTO streak_rules (tenant_id, id, key, name_fr, name_en, event_types,
				min_count, period, freeze_every_weeks) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING `+streakColumns,
			p.TenantID, id, in.Key, strings.TrimSpace(in.Name.FR), strings.TrimSpace(in.Name.EN), in.EventTypes, in.MinCount,
			string(in.Period), in.FreezeEveryWeeks))
		if postgres.IsUniqueViolation(err, "streak_rules_tenant_id_key_key") {
			return &rallye.Error{Code: rallye.CodeAlreadyExists, Field: "rule.key", Message: "is taken by another streak"}
		}
		return err
	})
	return out, err
}

func getStreakRule(ctx context.Context, tx pgx.Tx, tenantID, id uuid.UUID) (StreakRule, error) {
	r, err := scanStreakRule(tx.QueryRow(ctx, `SELECT `+streakColumns+` FROM streak_rules WHERE tenant_id = $1 AND id = $2`, tenantID, id))
	if postgres.IsNoRows(err) {
		return StreakRule{}, rallye.NotFound("streak")
	}
	if err != nil {
		return StreakRule{}, fmt.Errorf("read streak rule: %w", err)
	}
	return r, nil
}

// StreakRulePatch changes the fields Mask names: name, event_types,
// min_count, freeze_every_weeks, active (a rule's key and period never
// change). Activity already counted stays counted under the old event types.
type StreakRulePatch struct {
	StreakRuleInput
	Mask []string
}

// UpdateStreakRule changes a streak rule (admins). Errors: CodeInvalid;
// CodeNotFound.
func (s *Service) UpdateStreakRule(ctx context.Context, p rallye.Principal, id uuid.UUID, patch StreakRulePatch) (StreakRule, error) {
	if !p.Has(rallye.RoleAdmin) {
		return StreakRule{}, denied("only admins define streaks")
	}
	var out StreakRule
	err := s.db.InTenant(ctx, p.TenantID, func(tx pgx.Tx) error {
		cur, err := getStreakRule(ctx, tx, p.TenantID, id)
		if err != nil {
			return err
		}
		in := StreakRuleInput{Key: cur.Key, Name: cur.Name, EventTypes: cur.EventTypes, MinCount: cur.MinCount, Period: cur.Period,
			FreezeEveryWeeks: cur.FreezeEveryWeeks, Active: cur.Active}
		for _, f := range patch.Mask {
			switch f {
			case "name":
				in.Name = patch.Name
			case "event_types":
				in.EventTypes = slices.Compact(slices.Sorted(slices.Values(patch.EventTypes)))
			case "min_count":
				in.MinCount = patch.MinCount
			case "freeze_every_weeks":
				in.FreezeEveryWeeks = patch.FreezeEveryWeeks
			case "active":
				in.Active = patch.Active
			default:
				return rallye.Invalid("update_mask", "%q is not a streak field", f)
			}
		}
		if err := checkStreakRule(in); err != nil {
			return err
		}
		out, err = scanStreakRule(tx.QueryRow(ctx, `UPDATE streak_rules SET name_fr = $3, name_en = $4, event_types = $5,
				min_count = $6, freeze_every_weeks = $7, active = $8, updated_at = now()
			WHERE tenant_id = $1 AND id = $2 RETURNING `+streakColumns,
			p.TenantID, id, strings.TrimSpace(in.Name.FR), strings.TrimSpace(in.Name.EN), in.EventTypes, in.MinCount,
			in.FreezeEveryWeeks, in.Active))
		return err
	})
	return out, err
}

// ListStreakRules lists the company's streak rules by key (inactive ones
// too, for admins).
func (s *Service) ListStreakRules(ctx context.Context, p rallye.Principal) ([]StreakRule, error) {
	var out []StreakRule
	err := s.db.ReadTenant(ctx, p.TenantID, func(tx pgx.Tx) error {
		var err error
		out, err = streakRules(ctx, tx, p.TenantID, !p.Has(rallye.RoleAdmin))
		return err
	})
	return out, err
}

func streakRules(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, activeOnly bool) ([]StreakRule, error) {
	rows, err := tx.Query(ctx, `SELECT `+streakColumns+` FROM streak_rules WHERE tenant_id = $1 AND (active OR NOT $2) ORDER BY key`,
		tenantID, activeOnly)
	if err != nil {
		return nil, fmt.Errorf("read streak rules: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (StreakRule, error) { return scanStreakRule(r) })
}

// workCalendar says which days are working days for a company.
type workCalendar struct {
	weekend  map[time.Weekday]bool
	holidays map[time.Time]bool
}

func (c workCalendar) working(day time.Time) bool {
	return !c.weekend[day.Weekday()] && !c.holidays[day]
}

// weekStart returns the Monday of a day's week.
func weekStart(day time.Time) time.Time { return periodStart("week", day) }

// workingWeek reports whether a week (from its Monday) has a working day.
func (c workCalendar) workingWeek(monday time.Time) bool {
	for i := range 7 {
		if c.working(monday.AddDate(0, 0, i)) {
			return true
		}
	}
	return false
}

func loadCalendar(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, st Settings, from, to time.Time) (workCalendar, error) {
	c := workCalendar{weekend: map[time.Weekday]bool{}, holidays: map[time.Time]bool{}}
	for _, d := range st.Weekend {
		c.weekend[d] = true
	}
	hs, err := holidays(ctx, tx, tenantID, from, to.AddDate(0, 0, 1))
	if err != nil {
		return c, err
	}
	for _, h := range hs {
		c.holidays[h.Day] = true
	}
	return c, nil
}

// streakState is a streak computed from the activity.
type streakState struct {
	// Current counts the working periods met in a row up to the current
	// one (the current period counts once met; unmet, it does not break
	// the streak yet).
	Current, Best int
	// Count is the current period's activity; Met whether it meets the
	// goal.
	Count int
	Met   bool
	// LastMet is the newest period met (zero: none).
	LastMet time.Time
}

// computeStreak walks a person's activity per period (day or week start ->
// count) over the company's working calendar, up to today (the person's
// local date). Frozen periods keep a streak alive without counting.
// Non-working periods (a weekend day, a holiday, a week without working
// day) are skipped: activity in them neither counts nor breaks.
func computeStreak(rule StreakRule, counts map[time.Time]int, frozen map[time.Time]bool, cal workCalendar, today time.Time) streakState {
	step := 1
	cur := today
	isWorking := cal.working
	if rule.Period == StreakWeek {
		step, cur = 7, weekStart(today)
		isWorking = cal.workingWeek
	}
	var st streakState
	st.Count = counts[cur]
	st.Met = st.Count >= rule.MinCount
	// Best: walk forward from the first activity.
	first := cur
	for d := range counts {
		if d.Before(first) {
			first = d
		}
	}
	for d := range frozen {
		if d.Before(first) {
			first = d
		}
	}
	run := 0
	for d := first; !d.After(cur); d = d.AddDate(0, 0, step) {
		met := counts[d] >= rule.MinCount
		switch {
		case !isWorking(d):
		case met:
			run++
			st.Best = max(st.Best, run)
			st.LastMet = d
		case frozen[d]:
		case d.Equal(cur): // today is not over
		default:
			run = 0
		}
	}
	st.Current = run
	return st
}

// Streak is a person's streak on a rule.
type Streak struct {
	Rule StreakRule
	streakState
	// Period is the current period's start (the local day, or the Monday
	// of the local week); Missing the activity still needed in it.
	Period  time.Time
	Missing int
	// AtRisk: the streak is alive, the current working period is not met
	// yet.
	AtRisk bool
	// FreezeAvailable: a freeze may be used now; NextFreeze is the first
	// day one may when not.
	FreezeAvailable bool
	NextFreeze      time.Time
	// Frozen are the periods frozen in the last weeks.
	Frozen []time.Time
}

// streakOf computes a person's streak on a rule at now.
func (w *work) streakOf(rule StreakRule, who person, now time.Time) (Streak, error) {
	today := dayIn(now, who.location())
	counts := map[time.Time]int{}
	rows, err := w.tx.Query(w.ctx, `SELECT day, count FROM streak_activity WHERE tenant_id = $1 AND rule_id = $2 AND user_id = $3
		AND day >= $4`, w.tenant, rule.ID, who.ID, today.AddDate(0, 0, -maxStreakHistory))
	if err != nil {
		return Streak{}, fmt.Errorf("read streak activity: %w", err)
	}
	var d time.Time
	var n int
	if _, err := pgx.ForEachRow(rows, []any{&d, &n}, func() error { counts[civilOf(d)] = n; return nil }); err != nil {
		return Streak{}, fmt.Errorf("read streak activity: %w", err)
	}
	frozen := map[time.Time]bool{}
	var usedAt []time.Time
	rows, err = w.tx.Query(w.ctx, `SELECT day, used_at FROM streak_freezes WHERE tenant_id = $1 AND rule_id = $2 AND user_id = $3
		AND day >= $4 ORDER BY day`, w.tenant, rule.ID, who.ID, today.AddDate(0, 0, -maxStreakHistory))
	if err != nil {
		return Streak{}, fmt.Errorf("read freezes: %w", err)
	}
	var used time.Time
	if _, err := pgx.ForEachRow(rows, []any{&d, &used}, func() error {
		frozen[civilOf(d)] = true
		usedAt = append(usedAt, used)
		return nil
	}); err != nil {
		return Streak{}, fmt.Errorf("read freezes: %w", err)
	}
	st, err := w.settings()
	if err != nil {
		return Streak{}, err
	}
	cal, err := loadCalendar(w.ctx, w.tx, w.tenant, st, today.AddDate(0, 0, -maxStreakHistory-7), today.AddDate(0, 0, 7))
	if err != nil {
		return Streak{}, err
	}
	out := Streak{Rule: rule, streakState: computeStreak(rule, counts, frozen, cal, today)}
	out.Period = today
	working := cal.working(today)
	if rule.Period == StreakWeek {
		out.Period, working = weekStart(today), cal.workingWeek(weekStart(today))
	}
	out.Missing = max(rule.MinCount-out.Count, 0)
	out.AtRisk = out.Current > 0 && working && !out.Met
	for d := range frozen {
		if !d.Before(today.AddDate(0, 0, -7*max(rule.FreezeEveryWeeks, 1))) {
			out.Frozen = append(out.Frozen, d)
		}
	}
	slices.SortFunc(out.Frozen, func(a, b time.Time) int { return a.Compare(b) })
	if rule.FreezeEveryWeeks > 0 {
		out.FreezeAvailable = true
		for _, u := range usedAt {
			next := dayIn(u, who.location()).AddDate(0, 0, 7*rule.FreezeEveryWeeks)
			if next.After(today) {
				out.FreezeAvailable = false
				if next.After(out.NextFreeze) {
					out.NextFreeze = next
				}
			}
		}
	}
	return out, nil
}

// Streaks returns a person's streaks (uuid.Nil: the caller's) on the
// company's active rules.
//
// Errors: CodeNotFound for someone not in the company; CodePermissionDenied
// unless the caller is the person, one of their managers, HR or an admin.
func (s *Service) Streaks(ctx context.Context, p rallye.Principal, userID uuid.UUID) ([]Streak, error) {
	var out []Streak
	err := s.db.ReadTenant(ctx, p.TenantID, func(tx pgx.Tx) error {
		a := &access{p: p}
		who, err := a.subject(ctx, tx, userID)
		if err != nil {
			return err
		}
		rules, err := streakRules(ctx, tx, p.TenantID, true)
		if err != nil {
			return err
		}
		w := s.newWork(ctx, tx, p.TenantID)
		now := s.now()
		for _, r := range rules {
			st, err := w.streakOf(r, who, now)
			if err != nil {
				return err
			}
			out = append(out, st)
		}
		return nil
	})
	return out, err
}

// UseFreeze freezes a missed working day (or week, for weekly streaks) of
// the last seven days, so that the caller's streak goes on; once per the
// rule's freeze_every_weeks. Freezing a frozen day again changes nothing.
//
// Errors: CodeNotFound for a rule not in the company; CodeInvalid for a day
// that is not a past working day (or week start) of the last seven days;
// CodeFailedPrecondition when the rule has no freeze (NO_FREEZE), the day
// met its goal (ALREADY_MET) or a freeze was used too recently
// (FREEZE_USED).
func (s *Service) UseFreeze(ctx context.Context, p rallye.Principal, ruleID uuid.UUID, day time.Time) (Streak, error) {
	if !p.IsPerson() {
		return Streak{}, failed("NOT_A_PERSON", "this call is for people, not API keys")
	}
	day = civilOf(day)
	var out Streak
	err := s.db.InTenant(ctx, p.TenantID, func(tx pgx.Tx) error {
		rule, err := getStreakRule(ctx, tx, p.TenantID, ruleID)
		if err != nil {
			return err
		}
		w := s.newWork(ctx, tx, p.TenantID)
		who, ok, err := w.person(p.UserID)
		if err != nil {
			return err
		}
		if !ok {
			return rallye.NotFound("person")
		}
		now := s.now()
		cur, err := w.streakOf(rule, who, now)
		if err != nil {
			return err
		}
		if slices.ContainsFunc(cur.Frozen, day.Equal) {
			out = cur
			return nil
		}
		today := dayIn(now, who.location())
		st, err := w.settings()
		if err != nil {
			return err
		}
		cal, err := loadCalendar(ctx, tx, p.TenantID, st, today.AddDate(0, 0, -14), today)
		if err != nil {
			return err
		}
		switch {
		case rule.FreezeEveryWeeks == 0:
			return failed("NO_FREEZE", "this streak has no freeze")
		case !day.Before(cur.Period) || day.Before(cur.Period.AddDate(0, 0, -7)):
			return rallye.Invalid("day", "must be a missed day (or week) of the last seven days, before the current one")
		case rule.Period == StreakDay && !cal.working(day):
			return rallye.Invalid("day", "is not a working day")
		case rule.Period == StreakWeek && !day.Equal(weekStart(day)):
			return rallye.Invalid("day", "must be the Monday of the week to freeze")
		case !cur.FreezeAvailable:
			return failed("FREEZE_USED", "a freeze may be used again from %s", cur.NextFreeze.Format(time.DateOnly))
		}
		var count int
		err = tx.QueryRow(ctx, `SELECT count FROM streak_activity WHERE tenant_id = $1 AND rule_id = $2 AND user_id = $3 AND day = $4`,
			p.TenantID, rule.ID, who.ID, day).Scan(&count)
		if err != nil && !postgres.IsNoRows(err) {
			return fmt.Errorf("read activity: %w", err)
		}
		if count >= rule.MinCount {
			return failed("ALREADY_MET", "that day met the goal: nothing to freeze")
		}
		if _, err := tx.Exec(ctx, `INSERT INTO streak_freezes (tenant_id, rule_id, user_id, day, used_at) VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT DO NOTHING`, p.TenantID, rule.ID, who.ID, day, now); err != nil {
			return fmt.Errorf("freeze: %w", err)
		}
		if out, err = w.streakOf(rule, who, now); err != nil {
			return err
		}
		if err := w.reach(who, CriterionStreak, int64(out.Current), now, func(c Criterion) bool {
			return c.StreakKey == "" || c.StreakKey == rule.Key
		}); err != nil {
			return err
		}
		return w.flush()
	})
	return out, err
}

// streakDelta is a change of a person's activity on a rule in a period.
type streakDelta struct {
	rule, user uuid.UUID
	day        time.Time
}

// applyStreaks counts feed changes into streak activity, then re-computes
// the streaks they touched and awards streak badges. A retraction takes its
// activity back, which may break a streak: the feed is the truth.
func (w *work) applyStreaks(changes []event.Change, now time.Time) error {
	rules, err := streakRules(w.ctx, w.tx, w.tenant, true)
	if err != nil || len(rules) == 0 {
		return err
	}
	var users []uuid.UUID
	for _, ch := range changes {
		if ch.Event.UserID != uuid.Nil {
			users = append(users, ch.Event.UserID)
		}
	}
	ps, err := w.people(users)
	if err != nil {
		return err
	}
	deltas := map[streakDelta]int{}
	for _, ch := range changes {
		who, ok := ps[ch.Event.UserID]
		if !ok {
			continue
		}
		for _, r := range rules {
			if !slices.Contains(r.EventTypes, string(ch.Event.Type)) {
				continue
			}
			day := dayIn(ch.Event.OccurredAt, who.location())
			if r.Period == StreakWeek {
				day = weekStart(day)
			}
			deltas[streakDelta{r.ID, who.ID, day}] += ch.Sign
		}
	}
	if len(deltas) == 0 {
		return nil
	}
	keys := make([]streakDelta, 0, len(deltas))
	for k := range deltas {
		keys = append(keys, k)
	}
	// Rows in key order, as every writer locks them.
	slices.SortFunc(keys, func(a, b streakDelta) int {
		if c := strings.Compare(a.rule.String(), b.rule.String()); c != 0 {
			return c
		}
		if c := strings.Compare(a.user.String(), b.user.String()); c != 0 {
			return c
		}
		return a.day.Compare(b.day)
	})
	var ruleIDs, userIDs []uuid.UUID
	var days []time.Time
	var ns []int32
	for _, k := range keys {
		if deltas[k] == 0 {
			continue
		}
		ruleIDs, userIDs, days, ns = append(ruleIDs, k.rule), append(userIDs, k.user), append(days, k.day), append(ns, int32(deltas[k]))
	}
	if len(ns) > 0 {
		if _, err := w.tx.Exec(w.ctx, `INSERT INTO streak_activity AS a (tenant_id, rule_id, user_id, day, count)
			SELECT $1, r, u, d, n FROM unnest($2::uuid[], $3::uuid[], $4::date[], $5::int[]) AS x(r, u, d, n)
			ON CONFLICT (tenant_id, rule_id, user_id, day) DO UPDATE SET count = a.count + excluded.count`,
			w.tenant, ruleIDs, userIDs, days, ns); err != nil {
			return fmt.Errorf("count streak activity: %w", err)
		}
	}
	touched := map[[2]uuid.UUID]bool{}
	for i := range ruleIDs {
		touched[[2]uuid.UUID{ruleIDs[i], userIDs[i]}] = true
	}
	for _, r := range rules {
		for _, u := range uniqueSorted(userIDs) {
			if !touched[[2]uuid.UUID{r.ID, u}] {
				continue
			}
			st, err := w.streakOf(r, ps[u], now)
			if err != nil {
				return err
			}
			if err := w.reach(ps[u], CriterionStreak, int64(st.Current), now, func(c Criterion) bool {
				return c.StreakKey == "" || c.StreakKey == r.Key
			}); err != nil {
				return err
			}
		}
	}
	return nil
}

// CheckStreaksAtRisk announces, once per person, rule and day, the daily
// streaks that break tonight: alive, today a working day unmet, and the
// person's local time past the company's streak_risk_hour. Notifications
// consume the message; a River job runs it every hour.
func (s *Service) CheckStreaksAtRisk(ctx context.Context, tenantID uuid.UUID) (int, error) {
	announced := 0
	err := s.db.InTenant(ctx, tenantID, func(tx pgx.Tx) error {
		announced = 0
		w := s.newWork(ctx, tx, tenantID)
		rules, err := streakRules(ctx, tx, tenantID, true)
		if err != nil {
			return err
		}
		st, err := w.settings()
		if err != nil {
			return err
		}
		now := s.now()
		for _, r := range rules {
			if r.Period != StreakDay {
				continue
			}
			// People active in the last two weeks: a streak alive today met
			// its goal recently.
			rows, err := tx.Query(ctx, `SELECT DISTINCT user_id FROM streak_activity WHERE tenant_id = $1 AND rule_id = $2
				AND day >= $3 AND count >= $4`, tenantID, r.ID, dayIn(now, time.UTC).AddDate(0, 0, -15), r.MinCount)
			if err != nil {
				return err
			}
			users, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
			if err != nil {
				return err
			}
			ps, err := w.people(users)
			if err != nil {
				return err
			}
			for _, u := range users {
				who, ok := ps[u]
				if !ok || !who.Active || now.In(who.location()).Hour() < st.StreakRiskHour {
					continue
				}
				cur, err := w.streakOf(r, who, now)
				if err != nil {
					return err
				}
				if !cur.AtRisk {
					continue
				}
				tag, err := tx.Exec(ctx, `INSERT INTO streak_risk_notices (tenant_id, rule_id, user_id, day) VALUES ($1, $2, $3, $4)
					ON CONFLICT DO NOTHING`, tenantID, r.ID, u, cur.Period)
				if err != nil {
					return err
				}
				if tag.RowsAffected() == 0 {
					continue
				}
				announced++
				w.announce(outbox.Message{Kind: MessageStreakAtRisk, Key: fmt.Sprintf("streak-risk:%s:%s:%s", r.ID, u, cur.Period.Format(time.DateOnly)),
					Subjects: []uuid.UUID{u}, OccurredAt: now,
					Payload: StreakAtRisk{UserID: u, RuleID: r.ID, Key: r.Key, Name: r.Name, Current: cur.Current, Missing: cur.Missing,
						Day: cur.Period.Format(time.DateOnly)}})
			}
		}
		return w.flush()
	})
	return announced, err
}
