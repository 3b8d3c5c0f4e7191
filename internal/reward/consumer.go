package reward

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/rallyehq/rallye/internal/challenge"
	"github.com/rallyehq/rallye/internal/event"
	"github.com/rallyehq/rallye/internal/leaderboard"
	"github.com/rallyehq/rallye/internal/outbox"
)

// OutboxConsumer is the name of this area's outbox cursor.
const OutboxConsumer = "rewards"

// FeedConsumer is the name of this area's change-feed cursor.
const FeedConsumer = "rewards-activity"

// Consumer returns the outbox consumer delivering challenge results
// (settlement of their points, rank and threshold rewards, rank badges),
// counting mission completions and announcing levels. Register it on an
// outbox.Runner.
func (s *Service) Consumer() outbox.Consumer {
	return outbox.Consumer{
		Name: OutboxConsumer,
		Kinds: []outbox.Kind{challenge.MessageFinal, challenge.MessageResult, challenge.MessageMissionCompleted,
			challenge.MessageMissionUncompleted, leaderboard.MessagePointsRecorded},
		Handle: s.handle,
	}
}

func (s *Service) handle(ctx context.Context, tx pgx.Tx, d outbox.Delivery) (func(context.Context), error) {
	var receipts []leaderboard.Receipt
	ctx = withReceipts(ctx, &receipts)
	w := s.newWork(ctx, tx, d.TenantID)
	var err error
	switch d.Kind {
	case challenge.MessageFinal:
		var f challenge.Final
		if err = d.Decode(&f); err == nil {
			err = w.settle(f)
		}
	case challenge.MessageResult:
		var r challenge.Result
		if err = d.Decode(&r); err == nil {
			err = w.deliver(r, d.OccurredAt)
		}
	case challenge.MessageMissionCompleted, challenge.MessageMissionUncompleted:
		var m challenge.MissionCompletion
		if err = d.Decode(&m); err == nil {
			err = w.missionCompleted(m, d.Kind == challenge.MessageMissionCompleted, d.OccurredAt)
		}
	case leaderboard.MessagePointsRecorded:
		var pr leaderboard.PointsRecorded
		if err = d.Decode(&pr); err == nil {
			err = w.pointsRecorded(pr, d.OccurredAt)
		}
	}
	if err == nil {
		err = w.flush()
	}
	if err != nil {
		return nil, err
	}
	if len(receipts) == 0 {
		return nil, nil
	}
	return func(ctx context.Context) { s.publish(ctx, receipts) }, nil
}

func textOf(t challenge.Text) Text { return Text{FR: t.FR, EN: t.EN} }

// settle makes a final challenge's points spendable. A person whose points
// in it are negative gets the adjustment that brings them to zero first: a
// challenge never takes away points earned elsewhere.
func (w *work) settle(f challenge.Final) error {
	totals, err := leaderboard.ChallengeTotals(w.ctx, w.tx, w.tenant, f.ChallengeID)
	if err != nil {
		return err
	}
	name := textOf(f.Challenge)
	var adjust []leaderboard.Entry
	for user, t := range totals {
		if t < 0 {
			adjust = append(adjust, leaderboard.Entry{
				Key: fmt.Sprintf("wallet:settle:%s:%s", f.ChallengeID, user), UserID: user, Points: -t, At: f.FinalAt,
				Reason: "adjustment", Kind: leaderboard.EntryAdjustment,
				Cause: cause{ChallengeID: f.ChallengeID, Challenge: &name, Note: "settlement"}.json(),
			})
		}
	}
	if err := w.s.record(w.ctx, w.tx, w.tenant, adjust); err != nil {
		return err
	}
	if _, err := w.tx.Exec(w.ctx, `INSERT INTO wallet_settlements (tenant_id, challenge_id, settled_at) VALUES ($1, $2, $3)
		ON CONFLICT DO NOTHING`, w.tenant, f.ChallengeID, w.s.now()); err != nil {
		return fmt.Errorf("settle challenge: %w", err)
	}
	return nil
}

// deliver credits a participant's rank and threshold rewards (points and
// badges, each once by its grant key), awards the rank and completion
// badges their result earns, and shows the result in the team feed.
func (w *work) deliver(r challenge.Result, at time.Time) error {
	who, ok, err := w.person(r.UserID)
	if err != nil || !ok {
		return err
	}
	name := textOf(r.Challenge)
	var entries []leaderboard.Entry
	for _, g := range r.Rewards {
		if g.Points <= 0 {
			continue
		}
		kind := leaderboard.EntryRankReward
		if g.Kind == challenge.RewardThreshold {
			kind = leaderboard.EntryThresholdReward
		}
		label := textOf(g.Label)
		entries = append(entries, leaderboard.Entry{
			Key: "grant:" + g.Key, UserID: who.ID, Points: g.Points, At: at, Reason: "reward", Kind: kind,
			Cause: cause{ChallengeID: r.ChallengeID, Challenge: &name, Rank: g.Rank, Label: &label}.json(),
		})
	}
	if err := w.s.record(w.ctx, w.tx, w.tenant, entries); err != nil {
		return err
	}
	for _, g := range r.Rewards {
		if g.Badge == "" {
			continue
		}
		b, err := w.badgeByKey(g.Badge, textOf(g.Label))
		if err != nil {
			return err
		}
		if b.Active {
			if err := w.award(b, who, at, g.Key); err != nil {
				return err
			}
		}
	}
	kinds, err := activeBadges(w.ctx, w.tx, w.tenant, CriterionChallengeRank, CriterionChallengeCompleted)
	if err != nil {
		return err
	}
	for _, b := range kinds {
		c := b.Criterion
		if c.ChallengeKind != "" && c.ChallengeKind != string(r.Kind) {
			continue
		}
		earned := c.Kind == CriterionChallengeRank && r.Rank > 0 && r.Rank <= c.MaxRank && r.Points > 0 ||
			c.Kind == CriterionChallengeCompleted && r.MissionsTotal > 0 && r.MissionsCompleted >= r.MissionsTotal
		if earned {
			if err := w.award(b, who, at, "criterion"); err != nil {
				return err
			}
		}
	}
	if len(r.Rewards) > 0 || r.Rank > 0 && r.Rank <= 3 && r.Points > 0 {
		if err := w.feed(feedEntry{Kind: FeedChallengeResult, UserID: who.ID, TeamIDs: who.TeamIDs, At: at,
			Key:  fmt.Sprintf("result:%s:%s", r.ChallengeID, who.ID),
			Data: feedData{ChallengeID: r.ChallengeID, Challenge: &name, Rank: r.Rank, Tied: r.Tied, Rewards: r.Rewards}}); err != nil {
			return err
		}
	}
	return nil
}

// missionCompleted counts a completion (or its taking back) toward the
// missions badges.
func (w *work) missionCompleted(m challenge.MissionCompletion, done bool, at time.Time) error {
	who, ok, err := w.person(m.UserID)
	if err != nil || !ok {
		return err
	}
	if done {
		return w.count(who, counterMissions, allTime, 1, at)
	}
	_, err = w.bump(who.ID, counterMissions, allTime, -1)
	return err
}

// pointsRecorded announces the levels reached by the people whose lifetime
// points grew.
func (w *work) pointsRecorded(pr leaderboard.PointsRecorded, at time.Time) error {
	var ids []uuid.UUID
	for _, c := range pr.Changes {
		if c.Lifetime > 0 {
			ids = append(ids, c.UserID)
		}
	}
	ps, err := w.people(ids)
	if err != nil {
		return err
	}
	for _, id := range ids {
		if who, ok := ps[id]; ok {
			if err := w.levels(who, at); err != nil {
				return err
			}
		}
	}
	return nil
}

// Activity is the change-feed consumer counting streak activity, activity
// badges and wins. Register it with event.Feed.Register.
type Activity struct{ s *Service }

// Activity returns the service's change-feed consumer.
func (s *Service) Activity() *Activity { return &Activity{s: s} }

// Name implements event.Consumer.
func (*Activity) Name() string { return FeedConsumer }

// Consume implements event.Consumer.
func (a *Activity) Consume(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, changes []event.Change) (event.Applied, error) {
	w := a.s.newWork(ctx, tx, tenantID)
	now := a.s.now()
	if err := w.applyStreaks(changes, now); err != nil {
		return event.Applied{}, err
	}
	if err := w.applyActivityBadges(changes, now); err != nil {
		return event.Applied{}, err
	}
	if err := w.applyWins(changes); err != nil {
		return event.Applied{}, err
	}
	return event.Applied{}, w.flush()
}

// activityKey is a counter of an activity badge for a person and period.
type activityKey struct {
	badge, user uuid.UUID
	period      time.Time
}

// applyActivityBadges counts changes into the activity badges' counters and
// awards the badges whose threshold a counter reached.
func (w *work) applyActivityBadges(changes []event.Change, now time.Time) error {
	bs, err := activeBadges(w.ctx, w.tx, w.tenant, CriterionActivity)
	if err != nil || len(bs) == 0 {
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
	deltas := map[activityKey]int64{}
	var order []activityKey
	for _, ch := range changes {
		who, ok := ps[ch.Event.UserID]
		if !ok {
			continue
		}
		for _, b := range bs {
			c := b.Criterion
			if !containsType(c.EventTypes, ch.Event.Type) {
				continue
			}
			v := int64(1)
			if c.Measure == "amount" {
				v = ch.Event.Amount
			}
			k := activityKey{b.ID, who.ID, periodStart(c.Period, dayIn(ch.Event.OccurredAt, who.location()))}
			if _, seen := deltas[k]; !seen {
				order = append(order, k)
			}
			deltas[k] += int64(ch.Sign) * v
		}
	}
	byID := map[uuid.UUID]Badge{}
	for _, b := range bs {
		byID[b.ID] = b
	}
	for _, k := range order {
		d := deltas[k]
		if d == 0 {
			continue
		}
		v, err := w.bump(k.user, "badge:"+k.badge.String(), k.period, d)
		if err != nil {
			return err
		}
		b := byID[k.badge]
		threshold := b.Criterion.Threshold
		if b.Criterion.Measure == "amount" {
			threshold *= 100 // amounts count in minor units
		}
		if d > 0 && v >= threshold {
			if err := w.award(b, ps[k.user], now, "criterion"); err != nil {
				return err
			}
		}
	}
	return nil
}

func containsType(types []string, t event.Type) bool {
	for _, x := range types {
		if x == string(t) {
			return true
		}
	}
	return false
}

// applyWins shows deals won in the team feed; a deal reopened or retracted
// hides its entry again.
func (w *work) applyWins(changes []event.Change) error {
	var users []uuid.UUID
	for _, ch := range changes {
		if ch.Event.Type == event.DealWon && ch.Event.UserID != uuid.Nil {
			users = append(users, ch.Event.UserID)
		}
	}
	if len(users) == 0 {
		return nil
	}
	ps, err := w.people(users)
	if err != nil {
		return err
	}
	for _, ch := range changes {
		e := ch.Event
		who, ok := ps[e.UserID]
		if e.Type != event.DealWon || !ok {
			continue
		}
		key := "win:" + e.Source + ":" + e.ExternalID
		if ch.Sign < 0 {
			if _, err := w.tx.Exec(w.ctx, `UPDATE reward_feed SET hidden_at = now()
				WHERE tenant_id = $1 AND key = $2 AND data->>'version_id' = $3`, w.tenant, key, e.VersionID.String()); err != nil {
				return fmt.Errorf("hide win: %w", err)
			}
			continue
		}
		currency := e.Currency
		if currency == "" {
			currency = "EUR"
		}
		if err := w.upsertWin(who, key, e.OccurredAt, feedData{Amount: e.Amount, Currency: currency, VersionID: e.VersionID}); err != nil {
			return err
		}
	}
	return nil
}

func (w *work) upsertWin(who person, key string, at time.Time, d feedData) error {
	data, err := json.Marshal(d)
	if err != nil {
		return err
	}
	teams := who.TeamIDs
	if teams == nil {
		teams = []uuid.UUID{}
	}
	if _, err := w.tx.Exec(w.ctx, `INSERT INTO reward_feed (tenant_id, id, kind, user_id, team_ids, data, occurred_at, key)
		VALUES ($1, $2, 'win', $3, $4, $5, $6, $7)
		ON CONFLICT (tenant_id, key) DO UPDATE SET data = excluded.data, occurred_at = excluded.occurred_at, hidden_at = NULL`,
		w.tenant, newID(), who.ID, teams, data, at, key); err != nil {
		return fmt.Errorf("show win: %w", err)
	}
	return nil
}
