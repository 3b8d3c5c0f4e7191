package reward

import (
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/rallyehq/rallye/internal/outbox"
)

// Counters behind counting criteria (reward_counters.counter); activity
// badges count under "badge:<id>".
const (
	counterMissions = "missions"
	counterKudos    = "kudos"
)

// allTime is the period start of all-time counters.
var allTime = civil(1, 1, 1)

// bump adds delta to a person's counter and returns its new value.
func (w *work) bump(userID uuid.UUID, counter string, period time.Time, delta int64) (int64, error) {
	var v int64
	err := w.tx.QueryRow(w.ctx, `INSERT INTO reward_counters AS c (tenant_id, user_id, counter, period_start, value)
		VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (tenant_id, user_id, counter, period_start) DO UPDATE SET value = c.value + excluded.value
		RETURNING value`, w.tenant, userID, counter, period, delta).Scan(&v)
	if err != nil {
		return 0, fmt.Errorf("count %s: %w", counter, err)
	}
	return v, nil
}

// count moves a counter and, when it grew, awards the badges of the
// matching criterion whose threshold it reached. A counter going down (a
// correction) takes no badge back: badges are kept once earned.
func (w *work) count(who person, counter string, period time.Time, delta int64, at time.Time) error {
	v, err := w.bump(who.ID, counter, period, delta)
	if err != nil || delta <= 0 {
		return err
	}
	kind := map[string]CriterionKind{counterMissions: CriterionMissions, counterKudos: CriterionKudos}[counter]
	return w.reach(who, kind, v, at, nil)
}

// reach awards the person the active badges of a criterion kind whose
// threshold value reaches (and that match, when match is set).
func (w *work) reach(who person, kind CriterionKind, value int64, at time.Time, match func(Criterion) bool) error {
	bs, err := activeBadges(w.ctx, w.tx, w.tenant, kind)
	if err != nil {
		return err
	}
	for _, b := range bs {
		if value < b.Criterion.Threshold || match != nil && !match(b.Criterion) {
			continue
		}
		if err := w.award(b, who, at, "criterion"); err != nil {
			return err
		}
	}
	return nil
}

// periodStart returns the start of the period holding the local day.
func periodStart(period string, day time.Time) time.Time {
	switch period {
	case "day":
		return day
	case "week":
		return day.AddDate(0, 0, -((int(day.Weekday()) + 6) % 7))
	case "month":
		return civil(day.Year(), day.Month(), 1)
	case "quarter":
		return civil(day.Year(), day.Month()-(day.Month()-1)%3, 1)
	}
	return allTime
}

// levels announces the levels a person's lifetime points reached for the
// first time: each level is recorded once; the highest new one is announced
// (message, team feed) and level badges are evaluated.
func (w *work) levels(who person, at time.Time) error {
	st, err := w.settings()
	if err != nil {
		return err
	}
	bal, err := balanceOf(w.ctx, w.tx, w.tenant, who.ID)
	if err != nil {
		return err
	}
	cur, _ := LevelOf(st.Levels, bal.Lifetime)
	if cur.Number <= 1 {
		return nil
	}
	var top int
	if err := w.tx.QueryRow(w.ctx, `SELECT coalesce(max(level), 1) FROM reward_levels WHERE tenant_id = $1 AND user_id = $2`,
		w.tenant, who.ID).Scan(&top); err != nil {
		return fmt.Errorf("read levels reached: %w", err)
	}
	if cur.Number <= top {
		return nil
	}
	if _, err := w.tx.Exec(w.ctx, `INSERT INTO reward_levels (tenant_id, user_id, level, reached_at)
		SELECT $1, $2, l, $5 FROM generate_series($3::int, $4::int) AS l ON CONFLICT DO NOTHING`,
		w.tenant, who.ID, top+1, cur.Number, at); err != nil {
		return fmt.Errorf("record levels reached: %w", err)
	}
	if err := w.feed(feedEntry{Kind: FeedLevel, UserID: who.ID, TeamIDs: who.TeamIDs, At: at,
		Key:  fmt.Sprintf("level:%s:%d", who.ID, cur.Number),
		Data: feedData{Level: cur.Number, LevelName: &cur.Name}}); err != nil {
		return err
	}
	w.announce(outbox.Message{Kind: MessageLevelReached, Key: fmt.Sprintf("level:%s:%d", who.ID, cur.Number),
		Subjects: []uuid.UUID{who.ID}, OccurredAt: at,
		Payload: LevelReached{UserID: who.ID, Level: cur.Number, Name: cur.Name, Lifetime: bal.Lifetime}})
	return w.reach(who, CriterionLevel, int64(cur.Number), at, nil)
}
