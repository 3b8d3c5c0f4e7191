package challenge

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"

	"github.com/rallyehq/rallye/internal/event"
	"github.com/rallyehq/rallye/internal/outbox"
)

// StartArgs is the job that starts a challenge at its start instant.
type StartArgs struct {
	TenantID    uuid.UUID `json:"tenant_id"`
	ChallengeID uuid.UUID `json:"challenge_id"`
	// Version is the challenge's version when the job was scheduled: a job
	// of an older version (the window moved since) does nothing.
	Version int64 `json:"version"`
}

// Kind implements river.JobArgs.
func (StartArgs) Kind() string { return "challenge.start" }

// EndArgs is the job that ends a challenge at its end instant.
type EndArgs struct {
	TenantID    uuid.UUID `json:"tenant_id"`
	ChallengeID uuid.UUID `json:"challenge_id"`
	Version     int64     `json:"version"`
}

// Kind implements river.JobArgs.
func (EndArgs) Kind() string { return "challenge.end" }

// FinalizeArgs is the job that makes an ended challenge's results final
// once its data is in.
type FinalizeArgs struct {
	TenantID    uuid.UUID `json:"tenant_id"`
	ChallengeID uuid.UUID `json:"challenge_id"`
}

// Kind implements river.JobArgs.
func (FinalizeArgs) Kind() string { return "challenge.finalize" }

// StartWorker runs StartArgs jobs.
type StartWorker struct {
	river.WorkerDefaults[StartArgs]
	S *Service
}

// Work implements river.Worker.
func (w *StartWorker) Work(ctx context.Context, j *river.Job[StartArgs]) error {
	return snooze(w.S.Start(ctx, j.Args))
}

// EndWorker runs EndArgs jobs.
type EndWorker struct {
	river.WorkerDefaults[EndArgs]
	S *Service
}

// Work implements river.Worker.
func (w *EndWorker) Work(ctx context.Context, j *river.Job[EndArgs]) error {
	return snooze(w.S.End(ctx, j.Args))
}

// FinalizeWorker runs FinalizeArgs jobs.
type FinalizeWorker struct {
	river.WorkerDefaults[FinalizeArgs]
	S *Service
}

// Work implements river.Worker.
func (w *FinalizeWorker) Work(ctx context.Context, j *river.Job[FinalizeArgs]) error {
	return snooze(w.S.Finalize(ctx, j.Args))
}

// AddWorkers adds the lifecycle workers to a River bundle.
func AddWorkers(ws *river.Workers, s *Service) {
	river.AddWorker(ws, &StartWorker{S: s})
	river.AddWorker(ws, &EndWorker{S: s})
	river.AddWorker(ws, &FinalizeWorker{S: s})
}

// snooze turns "try again in d" into River's snooze.
func snooze(d time.Duration, err error) error {
	if err == nil && d > 0 {
		return river.JobSnooze(d)
	}
	return err
}

// Start starts a scheduled challenge at its start instant: it becomes
// active, people who joined its teams since publication are enrolled, duels
// are paired and the boards created. A job of an older version, a second
// run, or a run for a challenge in another state does nothing; a run before
// the instant (a clock behind the database's) asks to be retried then.
func (s *Service) Start(ctx context.Context, a StartArgs) (retryIn time.Duration, err error) {
	err = s.db.InTenant(ctx, a.TenantID, func(tx pgx.Tx) error {
		retryIn = 0
		c, err := s.current(ctx, tx, a.TenantID, a.ChallengeID, a.Version, StateScheduled)
		if err != nil || c == nil {
			return err
		}
		if now := s.now(); now.Before(c.StartsAt) {
			retryIn = c.StartsAt.Sub(now)
			return nil
		}
		return s.start(ctx, tx, c)
	})
	return retryIn, err
}

// current reads a challenge for a job, locked, or nil when the job is stale
// (another version, another state).
func (s *Service) current(ctx context.Context, tx pgx.Tx, tenantID, id uuid.UUID, version int64, states ...State) (*Challenge, error) {
	c, err := getChallenge(ctx, tx, tenantID, id, updateLock)
	if err != nil {
		return nil, err
	}
	if version != 0 && c.Version != version {
		return nil, nil
	}
	for _, st := range states {
		if c.State == st {
			return c, nil
		}
	}
	return nil, nil
}

func (s *Service) start(ctx context.Context, tx pgx.Tx, c *Challenge) error {
	now := s.now()
	tag, err := tx.Exec(ctx, `UPDATE challenges SET state = 'active', started_at = $3, updated_at = $3
		WHERE tenant_id = $1 AND id = $2 AND state = 'scheduled'`, c.TenantID, c.ID, now)
	if err != nil {
		return fmt.Errorf("start challenge: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return nil
	}
	c.State, c.StartedAt = StateActive, now
	if err := s.enrollEligible(ctx, tx, c, c.StartsAt); err != nil {
		return err
	}
	if c.Definition.Format == FormatDuels {
		if err := s.pairDuels(ctx, tx, c); err != nil {
			return err
		}
	}
	if err := s.ensureBoards(ctx, tx, c); err != nil {
		return err
	}
	return s.launched(ctx, tx, c, MessageStarted)
}

// End ends an active challenge at its end instant and schedules its
// finalization. Stale and repeated runs do nothing: the transition is an
// UPDATE ... WHERE state = 'active', so two servers never end it twice.
func (s *Service) End(ctx context.Context, a EndArgs) (retryIn time.Duration, err error) {
	err = s.db.InTenant(ctx, a.TenantID, func(tx pgx.Tx) error {
		retryIn = 0
		c, err := s.current(ctx, tx, a.TenantID, a.ChallengeID, a.Version, StateScheduled, StateActive)
		if err != nil || c == nil {
			return err
		}
		if now := s.now(); now.Before(c.EndsAt) {
			retryIn = c.EndsAt.Sub(now)
			return nil
		}
		if c.State == StateScheduled { // the start job has not run yet
			if err := s.start(ctx, tx, c); err != nil {
				return err
			}
		}
		_, err = s.end(ctx, tx, c)
		return err
	})
	return retryIn, err
}

// end moves an active challenge to ended and enqueues its finalization at
// the end of the grace period.
func (s *Service) end(ctx context.Context, tx pgx.Tx, c *Challenge) (bool, error) {
	now := s.now()
	tag, err := tx.Exec(ctx, `UPDATE challenges SET state = 'ended', ended_at = $3, updated_at = $3
		WHERE tenant_id = $1 AND id = $2 AND state = 'active'`, c.TenantID, c.ID, now)
	if err != nil {
		return false, fmt.Errorf("end challenge: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return false, nil
	}
	c.State, c.EndedAt = StateEnded, now
	if _, err := s.jobs.InsertTx(ctx, tx, FinalizeArgs{TenantID: c.TenantID, ChallengeID: c.ID},
		&river.InsertOpts{ScheduledAt: c.EarliestFinal()}); err != nil {
		return false, fmt.Errorf("schedule finalization: %w", err)
	}
	return true, nil
}

// ProgressConsumer is the name of the progress consumer's feed cursor.
const ProgressConsumer = "challenge-progress"

// Completeness tells how complete an ended challenge's data is.
type Completeness struct {
	// Sources are the sources that sent data since the start, with whether
	// their newest event reaches the end.
	Sources []SourceMark
	// Complete: every such source reached the end.
	Complete bool
	// EarliestFinal and LatestFinal bound when the results become final.
	EarliestFinal, LatestFinal time.Time
}

// SourceMark is one source's watermark against the challenge's end.
type SourceMark struct {
	event.Watermark
	Reached bool
}

// completeness applies the data rule: a source counts when it sent
// something since the challenge started (a source silent for longer is not
// waited for), and it has reached the end when its newest event time is at
// or after the end.
func completeness(ctx context.Context, tx pgx.Tx, c *Challenge) (Completeness, error) {
	marks, err := event.SourceWatermarks(ctx, tx, c.TenantID)
	if err != nil {
		return Completeness{}, err
	}
	out := Completeness{Complete: true, EarliestFinal: c.EarliestFinal(), LatestFinal: c.LatestFinal()}
	for _, w := range marks {
		if c.StartsAt.IsZero() || w.LastReceived.Before(c.StartsAt) {
			continue
		}
		m := SourceMark{Watermark: w, Reached: !w.NewestEvent.Before(c.EndsAt)}
		out.Complete = out.Complete && m.Reached
		out.Sources = append(out.Sources, m)
	}
	return out, nil
}

// Finalize makes an ended challenge's results final, once: when the grace
// period is over and every source's data reaches the end (or the maximum
// data wait is over), and the progress consumer has applied every change
// received. It writes the final ranks, freezes the boards and grants the
// rewards, in one transaction. Before that it asks to be retried later.
func (s *Service) Finalize(ctx context.Context, a FinalizeArgs) (retryIn time.Duration, err error) {
	err = s.db.InTenant(ctx, a.TenantID, func(tx pgx.Tx) error {
		retryIn = 0
		c, err := s.current(ctx, tx, a.TenantID, a.ChallengeID, 0, StateEnded)
		if err != nil || c == nil || c.Final() {
			return err
		}
		now := s.now()
		if now.Before(c.EarliestFinal()) {
			retryIn = c.EarliestFinal().Sub(now)
			return nil
		}
		comp, err := completeness(ctx, tx, c)
		if err != nil {
			return err
		}
		if !comp.Complete && now.Before(c.LatestFinal()) {
			retryIn = min(s.recheck, c.LatestFinal().Sub(now))
			return nil
		}
		pending, err := event.Pending(ctx, tx, c.TenantID, ProgressConsumer)
		if err != nil {
			return err
		}
		if pending {
			retryIn = min(s.recheck, 5*time.Second)
			return nil
		}
		// Finalizing records no points: the boards freeze as they are.
		return s.finalize(ctx, tx, c, now)
	})
	return retryIn, err
}

func (s *Service) finalize(ctx context.Context, tx pgx.Tx, c *Challenge, now time.Time) error {
	tag, err := tx.Exec(ctx, `UPDATE challenges SET finalized_at = $3, updated_at = $3
		WHERE tenant_id = $1 AND id = $2 AND state = 'ended' AND finalized_at IS NULL`, c.TenantID, c.ID, now)
	if err != nil {
		return fmt.Errorf("finalize challenge: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return nil
	}
	if err := s.ensureBoards(ctx, tx, c); err != nil {
		return err
	}
	st, err := s.standings(ctx, tx, c)
	if err != nil {
		return err
	}
	users := make([]uuid.UUID, len(st.People))
	ranks := make([]int32, len(st.People))
	points := make([]int64, len(st.People))
	for i, r := range st.People {
		users[i], ranks[i], points[i] = r.UserID, int32(r.Rank), r.Points
	}
	if _, err := tx.Exec(ctx, `UPDATE challenge_enrollments e SET final_rank = x.r, final_points = x.p
		FROM unnest($3::uuid[], $4::int[], $5::bigint[]) AS x(u, r, p)
		WHERE e.tenant_id = $1 AND e.challenge_id = $2 AND e.user_id = x.u`, c.TenantID, c.ID, users, ranks, points); err != nil {
		return fmt.Errorf("write final ranks: %w", err)
	}
	if s.boards != nil {
		if err := s.boards.Freeze(ctx, tx, c.TenantID, c.ID); err != nil {
			return fmt.Errorf("freeze boards: %w", err)
		}
	}
	grants, err := s.grantRewards(ctx, tx, c, st, now)
	if err != nil {
		return err
	}
	return s.announceFinal(ctx, tx, c, st, grants, now)
}

// grantRewards grants rank rewards (to teams' members in team mode, by team
// rank) and threshold rewards, each under a key that makes it once only, and
// returns them per person. Nobody wins a rank with no points: a rank reward
// needs positive points (the team's, in team mode). Participants sharing a
// rank each get the reward of that rank.
func (s *Service) grantRewards(ctx context.Context, tx pgx.Tx, c *Challenge, st *Standings, now time.Time) (map[uuid.UUID][]GrantedReward, error) {
	out := map[uuid.UUID][]GrantedReward{}
	for i, r := range c.Definition.Rewards {
		for _, row := range st.People {
			rank, scored := row.Rank, row.Points > 0
			if r.Kind == RewardRank && c.Definition.Mode == ModeTeam {
				rank, scored = st.teamRank(row.TeamID), st.teamPoints(row.TeamID) > 0
			}
			switch {
			case r.Kind == RewardRank && (rank < r.FromRank || rank > r.ToRank || rank == 0 || !scored):
				continue
			case r.Kind == RewardThreshold && row.Points < r.MinPoints:
				continue
			}
			g := Grant{
				Key:         fmt.Sprintf("challenge:%s:reward:%d:user:%s", c.ID, i, row.UserID),
				ChallengeID: c.ID, UserID: row.UserID, TeamID: row.TeamID, RewardRef: r.Ref, Kind: r.Kind,
				Points: row.Points, BonusPoints: r.Points, Badge: r.Badge, Label: r.Label, At: now,
			}
			if r.Kind == RewardRank {
				g.Rank = rank
			}
			if err := s.rewards.GrantReward(ctx, tx, c.TenantID, g); err != nil {
				return nil, err
			}
			out[row.UserID] = append(out[row.UserID], GrantedReward{Key: g.Key, Kind: g.Kind, Rank: g.Rank,
				Points: g.BonusPoints, Badge: g.Badge, Label: g.Label})
		}
	}
	return out, nil
}

// announceFinal appends challenge.final and each participant's
// challenge.result, the last statements of the finalizing transaction.
func (s *Service) announceFinal(ctx context.Context, tx pgx.Tx, c *Challenge, st *Standings, grants map[uuid.UUID][]GrantedReward, now time.Time) error {
	completed := map[uuid.UUID]int{}
	rows, err := tx.Query(ctx, `SELECT subject_id, count(*) FROM challenge_progress
		WHERE tenant_id = $1 AND challenge_id = $2 AND completed GROUP BY subject_id`, c.TenantID, c.ID)
	if err != nil {
		return fmt.Errorf("count completed missions: %w", err)
	}
	var subject uuid.UUID
	var n int
	if _, err := pgx.ForEachRow(rows, []any{&subject, &n}, func() error { completed[subject] = n; return nil }); err != nil {
		return fmt.Errorf("count completed missions: %w", err)
	}
	msgs := []outbox.Message{{TenantID: c.TenantID, Kind: MessageFinal, Key: fmt.Sprintf("challenge:%s:final", c.ID),
		Subjects: []uuid.UUID{c.ID}, OccurredAt: now, Payload: Final{ChallengeID: c.ID, Challenge: c.Definition.Name,
			Kind: c.Definition.Kind, Mode: c.Definition.Mode, EndedAt: c.EndedAt, FinalAt: now, Participants: len(st.People)}}}
	for _, row := range st.People {
		done := completed[row.UserID]
		if row.TeamID != uuid.Nil {
			done += completed[row.TeamID]
		}
		msgs = append(msgs, outbox.Message{TenantID: c.TenantID, Kind: MessageResult,
			Key: fmt.Sprintf("challenge:%s:result:%s", c.ID, row.UserID), Subjects: []uuid.UUID{row.UserID, c.ID}, OccurredAt: now,
			Payload: Result{ChallengeID: c.ID, Challenge: c.Definition.Name, Kind: c.Definition.Kind, UserID: row.UserID,
				TeamID: row.TeamID, Rank: row.Rank, Tied: st.tied(row.Rank), Points: row.Points, Participants: len(st.People),
				MissionsCompleted: done, MissionsTotal: len(c.Missions), FinalAt: now, Rewards: grants[row.UserID]}})
	}
	return outbox.Append(ctx, tx, msgs...)
}
