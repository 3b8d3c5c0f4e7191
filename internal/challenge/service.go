package challenge

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"

	"github.com/rallyehq/rallye/internal/holdout"
	"github.com/rallyehq/rallye/internal/idempotency"
	"github.com/rallyehq/rallye/internal/outbox"
	"github.com/rallyehq/rallye/internal/rallye"
)

// startTolerance lets a client say "now" with a slightly old clock.
const startTolerance = time.Minute

// CreateRequest describes a new challenge.
type CreateRequest struct {
	Definition Definition
	TeamIDs    []uuid.UUID
	UserIDs    []uuid.UUID
	// StartsAt zero: when published. EndsAt zero: the start plus the
	// definition's Duration.
	StartsAt, EndsAt time.Time
	// Publish schedules the challenge at once instead of leaving a draft.
	Publish bool
	// RequestID makes the call safe to retry.
	RequestID string
	// TemplateKey is set by CreateFromTemplate.
	TemplateKey string
	// Holdout, when set with a share above 0, keeps that share of the
	// eligible people of each team out of the challenge (see drawHoldout).
	Holdout *HoldoutRequest
	// fingerprint, when set, is what a retry must repeat (the template
	// request rather than the definition it resolved to).
	fingerprint any
}

// Create creates a challenge (a draft, or scheduled when Publish is set), or
// returns the one an earlier call with the same request id created.
//
// Errors: CodeInvalid naming the field (definition.missions[2].filter...);
// CodeNotFound for a team or person not in the company; CodePermissionDenied
// when a manager names teams or people outside their own.
func (s *Service) Create(ctx context.Context, p rallye.Principal, req CreateRequest) (*Challenge, error) {
	req.Definition = req.Definition.withDefaults()
	if _, err := compile(req.Definition, "definition."); err != nil {
		return nil, err
	}
	req.TeamIDs, req.UserIDs = uniqueIDs(req.TeamIDs), uniqueIDs(req.UserIDs)
	if err := checkWindow(req.StartsAt, req.EndsAt, req.Definition.Duration, time.Time{}); err != nil {
		return nil, err
	}
	var c *Challenge
	err := s.db.InTenant(ctx, p.TenantID, func(tx pgx.Tx) error {
		op := "CreateChallenge"
		if req.TemplateKey != "" {
			op = "CreateChallengeFromTemplate"
		}
		fp := any(req)
		if req.fingerprint != nil {
			fp = req.fingerprint
		}
		id, fresh, err := idempotency.Claim(ctx, tx, idempotency.Key{
			Caller: p, Operation: op, RequestID: req.RequestID, Request: fp,
		}, newID())
		if err != nil {
			return err
		}
		v := &viewer{p: p}
		if !fresh {
			// A replay answers with the stored challenge only if the
			// caller may see it now.
			c, _, err = v.visible(ctx, tx, id, noLock)
			return err
		}
		if err := v.checkScope(ctx, tx, req.TeamIDs, req.UserIDs); err != nil {
			return err
		}
		var tz string
		if err := tx.QueryRow(ctx, `SELECT time_zone FROM tenants WHERE id = $1`, p.TenantID).Scan(&tz); err != nil {
			return fmt.Errorf("read company time zone: %w", err)
		}
		now := s.now()
		c = &Challenge{
			TenantID: p.TenantID, ID: id, TemplateKey: req.TemplateKey, Definition: req.Definition, State: StateDraft,
			TeamIDs: req.TeamIDs, UserIDs: req.UserIDs, StartsAt: req.StartsAt, EndsAt: req.EndsAt, TimeZone: tz,
			Version: 1, CreatedBy: p.UserID, CreatedAt: now, UpdatedAt: now,
		}
		for _, m := range req.Definition.Missions {
			c.Missions = append(c.Missions, MissionInfo{Mission: m})
		}
		c.Definition.Missions = nil
		if err := insertChallenge(ctx, tx, c); err != nil {
			return err
		}
		if req.Holdout != nil && req.Holdout.Share > 0 {
			if err := drawHoldout(ctx, tx, c, *req.Holdout); err != nil {
				return err
			}
		}
		if req.Publish {
			return s.publish(ctx, tx, c)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// HoldoutRequest asks for a holdout group at creation.
type HoldoutRequest struct {
	// Share of each team's eligible people kept out, above 0 and at most
	// holdout.MaxShare.
	Share float64
	// Seed of the draw; nil: a random one (recorded either way).
	Seed *int64
}

// drawHoldout draws the people kept out of c among those eligible now (the
// reps of its teams and the people it names), stratified by the team they
// would play for, and records share, seed and people. People who join the
// teams later are not drawn: they take part as usual.
func drawHoldout(ctx context.Context, tx pgx.Tx, c *Challenge, req HoldoutRequest) error {
	if req.Share > holdout.MaxShare || math.IsNaN(req.Share) {
		return rallye.Invalid("holdout.share", "must be above 0 and at most %v", holdout.MaxShare)
	}
	seed := rand.Int64()
	if req.Seed != nil {
		seed = *req.Seed
	}
	rows, err := tx.Query(ctx, `SELECT id FROM users WHERE tenant_id = $1 AND active`, c.TenantID)
	if err != nil {
		return fmt.Errorf("read people: %w", err)
	}
	users, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
	if err != nil {
		return fmt.Errorf("read people: %w", err)
	}
	o, err := loadOrg(ctx, tx, c.TenantID, users)
	if err != nil {
		return err
	}
	var members []holdout.Member
	for _, u := range users {
		if pl := o.place(c, u); pl.eligible {
			members = append(members, holdout.Member{ID: u, Stratum: pl.team})
		}
	}
	c.HoldoutShare, c.HoldoutSeed = req.Share, seed
	c.HeldOut = holdout.Draw(seed, req.Share, members)
	if c.HeldOut == nil {
		c.HeldOut = []uuid.UUID{}
	}
	_, err = tx.Exec(ctx, `UPDATE challenges SET holdout_share = $3, holdout_seed = $4, holdout_user_ids = $5
		WHERE tenant_id = $1 AND id = $2`, c.TenantID, c.ID, c.HoldoutShare, c.HoldoutSeed, c.HeldOut)
	if err != nil {
		return fmt.Errorf("record holdout: %w", err)
	}
	return nil
}

// checkWindow checks a requested window: the end after the start, within
// MaxWindow, and an end or a default duration. notBefore, when set, is the
// earliest acceptable start.
func checkWindow(start, end time.Time, d Duration, notBefore time.Time) error {
	switch {
	case end.IsZero() && d == 0:
		return rallye.Invalid("end_time", "is required: the definition has no default duration")
	case !notBefore.IsZero() && !start.IsZero() && start.Before(notBefore.Add(-startTolerance)):
		return rallye.Invalid("start_time", "is in the past")
	case !start.IsZero() && !end.IsZero() && !end.After(start):
		return rallye.Invalid("end_time", "must be after the start")
	case !start.IsZero() && !end.IsZero() && end.Sub(start) > MaxWindow:
		return rallye.Invalid("end_time", "a challenge lasts at most %d days", int(MaxWindow.Hours()/24))
	}
	return nil
}

// Publish schedules a draft: it starts at its start time (at once if none
// was set). Errors: CodeFailedPrecondition unless the challenge is a draft;
// CodeInvalid when its start is in the past.
func (s *Service) Publish(ctx context.Context, p rallye.Principal, id uuid.UUID) (*Challenge, error) {
	return s.change(ctx, p, id, func(ctx context.Context, tx pgx.Tx, c *Challenge) error {
		if c.State != StateDraft {
			return failed("PUBLISHED", "the challenge is already published")
		}
		return s.publish(ctx, tx, c)
	})
}

func failed(reason, format string, args ...any) error {
	return &rallye.Error{Code: rallye.CodeFailedPrecondition, Reason: reason, Message: fmt.Sprintf(format, args...)}
}

// publish moves a draft to scheduled: window resolved, participants enrolled
// (auto), start and end jobs enqueued in the same transaction.
func (s *Service) publish(ctx context.Context, tx pgx.Tx, c *Challenge) error {
	now := s.now()
	if c.StartsAt.IsZero() {
		// To the second, as CRMs time their events: an event sent in the
		// second of the launch counts.
		c.StartsAt = now.Truncate(time.Second)
	}
	if c.EndsAt.IsZero() {
		c.EndsAt = c.StartsAt.Add(time.Duration(c.Definition.Duration))
	}
	if err := checkWindow(c.StartsAt, c.EndsAt, c.Definition.Duration, now); err != nil {
		return err
	}
	cc, err := s.compiledFor(c)
	if err != nil {
		return err
	}
	c.State, c.PublishedAt, c.Version = StateScheduled, now, c.Version+1
	_, err = tx.Exec(ctx, `UPDATE challenges SET state = 'scheduled', starts_at = $3, ends_at = $4, event_types = $5,
			published_at = $6, version = $7, updated_at = $6
		WHERE tenant_id = $1 AND id = $2 AND state = 'draft'`,
		c.TenantID, c.ID, c.StartsAt, c.EndsAt, cc.eventTypes(), now, c.Version)
	if err != nil {
		return fmt.Errorf("publish challenge: %w", err)
	}
	c.UpdatedAt = now
	if err := s.enrollEligible(ctx, tx, c, c.StartsAt); err != nil {
		return err
	}
	if err := s.schedule(ctx, tx, c); err != nil {
		return err
	}
	return s.launched(ctx, tx, c, MessagePublished)
}

// schedule enqueues the jobs of the challenge's current version: the start
// (while scheduled) and the end. Jobs of older versions find themselves
// stale and do nothing.
func (s *Service) schedule(ctx context.Context, tx pgx.Tx, c *Challenge) error {
	if s.jobs == nil {
		return fmt.Errorf("challenge: no job queue")
	}
	if c.State == StateScheduled {
		if _, err := s.jobs.InsertTx(ctx, tx, StartArgs{TenantID: c.TenantID, ChallengeID: c.ID, Version: c.Version},
			&river.InsertOpts{ScheduledAt: c.StartsAt}); err != nil {
			return fmt.Errorf("schedule start: %w", err)
		}
	}
	if _, err := s.jobs.InsertTx(ctx, tx, EndArgs{TenantID: c.TenantID, ChallengeID: c.ID, Version: c.Version},
		&river.InsertOpts{ScheduledAt: c.EndsAt}); err != nil {
		return fmt.Errorf("schedule end: %w", err)
	}
	return nil
}

// change runs fn on a challenge the caller manages, locked, and returns it
// re-read.
func (s *Service) change(ctx context.Context, p rallye.Principal, id uuid.UUID, fn func(ctx context.Context, tx pgx.Tx, c *Challenge) error) (*Challenge, error) {
	return s.changeScoring(ctx, p, id, func(ctx context.Context, tx pgx.Tx, c *Challenge) (Receipts, error) {
		return nil, fn(ctx, tx, c)
	})
}

// changeScoring is change for a fn that records points: their receipts are
// published after commit.
func (s *Service) changeScoring(ctx context.Context, p rallye.Principal, id uuid.UUID, fn func(ctx context.Context, tx pgx.Tx, c *Challenge) (Receipts, error)) (*Challenge, error) {
	var out *Challenge
	var receipts Receipts
	err := s.db.InTenant(ctx, p.TenantID, func(tx pgx.Tx) error {
		receipts = nil // a retried transaction records again
		v := &viewer{p: p}
		c, err := v.managedChallenge(ctx, tx, id, updateLock)
		if err != nil {
			return err
		}
		if receipts, err = fn(ctx, tx, c); err != nil {
			return err
		}
		out, err = getChallenge(ctx, tx, p.TenantID, id, noLock)
		return err
	})
	if err != nil {
		return nil, err
	}
	receipts.Publish(ctx)
	return out, nil
}

// record records entries (in chunks the leaderboard accepts) and returns
// the receipts, for the caller to publish after commit.
func (s *Service) record(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, entries []Entry) (Receipts, error) {
	if len(entries) == 0 || s.scores == nil {
		return nil, nil
	}
	var rs Receipts
	for chunk := range slices.Chunk(entries, 1000) {
		r, err := s.scores.Record(ctx, tx, tenantID, chunk)
		if err != nil {
			return nil, fmt.Errorf("record points: %w", err)
		}
		rs = append(rs, r)
	}
	return rs, nil
}

// Patch changes a challenge. Mask names the fields to change, by their API
// names: name, description, rewards, grace_period, max_data_wait
// (definition fields taken from Definition), team_ids, user_ids,
// start_time, end_time; and, in a draft only, kind, mode, format,
// enrollment, sequential, race_target_points, league_target_points,
// team_metric, duration, missions, scoring_rules.
type Patch struct {
	Definition       Definition
	TeamIDs, UserIDs []uuid.UUID
	StartsAt, EndsAt time.Time
	Mask             []string
}

// What may change in which state: everything in a draft; names,
// descriptions and rewards until the challenge is final; the data waits
// until it ends; the scope (adding only) and the window (the end only later
// once it runs) while it is scheduled or active.
var draftOnly = map[string]bool{
	"kind": true, "mode": true, "format": true, "enrollment": true, "sequential": true, "race_target_points": true,
	"league_target_points": true, "team_metric": true, "duration": true, "missions": true, "scoring_rules": true,
	"tie_rule": true,
}

// Update changes what can safely change in the challenge's state.
//
// Errors: CodeFailedPrecondition naming the field that cannot change now;
// CodeInvalid for a bad value; CodePermissionDenied for a manager naming
// teams outside theirs.
func (s *Service) Update(ctx context.Context, p rallye.Principal, id uuid.UUID, patch Patch) (*Challenge, error) {
	return s.change(ctx, p, id, func(ctx context.Context, tx pgx.Tx, c *Challenge) error {
		return s.update(ctx, tx, p, c, patch)
	})
}

func (s *Service) update(ctx context.Context, tx pgx.Tx, p rallye.Principal, c *Challenge, patch Patch) error {
	now := s.now()
	running := c.State == StateScheduled || c.State == StateActive
	if c.State == StateCancelled {
		return failed("CANCELLED", "the challenge is cancelled")
	}
	def := c.Definition
	def.TieRule = def.Ties() // a challenge stored before the rule keeps its shared ranks
	def.Missions = make([]Mission, len(c.Missions))
	for i, m := range c.Missions {
		def.Missions[i] = m.Mission
	}
	in := patch.Definition
	teams, users := c.TeamIDs, c.UserIDs
	start, end := c.StartsAt, c.EndsAt
	windowMoved := false
	for _, f := range patch.Mask {
		if draftOnly[f] && c.State != StateDraft {
			return &rallye.Error{Code: rallye.CodeFailedPrecondition, Field: "definition." + f, Reason: "PUBLISHED",
				Message: "cannot change once the challenge is published"}
		}
		notAfter := func(ok bool, field, what string) error {
			if !ok {
				return &rallye.Error{Code: rallye.CodeFailedPrecondition, Field: field, Message: what}
			}
			return nil
		}
		var err error
		switch f {
		case "name":
			def.Name = in.Name
		case "description":
			def.Description = in.Description
		case "rewards":
			err = notAfter(!c.Final(), "definition.rewards", "the challenge is final: its rewards are granted")
			def.Rewards = in.Rewards
		case "grace_period":
			err = notAfter(c.State == StateDraft || running, "definition.grace_period", "the challenge has ended")
			def.Grace = in.Grace
		case "max_data_wait":
			err = notAfter(c.State == StateDraft || running, "definition.max_data_wait", "the challenge has ended")
			def.MaxDataWait = in.MaxDataWait
		case "kind":
			def.Kind = in.Kind
		case "mode":
			def.Mode = in.Mode
		case "format":
			def.Format = in.Format
		case "enrollment":
			def.Enrollment = in.Enrollment
		case "sequential":
			def.Sequential = in.Sequential
		case "race_target_points":
			def.RaceTarget = in.RaceTarget
		case "league_target_points":
			def.LeagueTarget = in.LeagueTarget
		case "team_metric":
			def.TeamMetric = in.TeamMetric
		case "tie_rule":
			def.TieRule = in.TieRule
		case "duration":
			def.Duration = in.Duration
		case "missions":
			def.Missions = in.Missions
		case "scoring_rules":
			def.Rules = in.Rules
		case "team_ids", "user_ids":
			next := uniqueIDs(patch.TeamIDs)
			prev := teams
			if f == "user_ids" {
				next, prev = uniqueIDs(patch.UserIDs), users
			}
			if c.State != StateDraft {
				err = notAfter(running, f, "the challenge has ended")
				for _, id := range prev {
					if err == nil && !slices.Contains(next, id) {
						err = notAfter(false, f, "participants can be added, not removed, once the challenge is published")
					}
				}
			}
			if f == "team_ids" {
				teams = next
			} else {
				users = next
			}
		case "start_time":
			err = notAfter(c.State == StateDraft || c.State == StateScheduled, "start_time", "the challenge has started")
			start, windowMoved = patch.StartsAt, true
		case "end_time":
			err = notAfter(c.State == StateDraft || running, "end_time", "the challenge has ended")
			if err == nil && c.State == StateActive && !patch.EndsAt.After(c.EndsAt) {
				err = notAfter(false, "end_time", "a running challenge can be extended, not shortened: end it instead")
			}
			end, windowMoved = patch.EndsAt, true
		default:
			return rallye.Invalid("update_mask", "%q cannot be changed", f)
		}
		if err != nil {
			return err
		}
	}
	def = def.withDefaults()
	if _, err := compile(def, "definition."); err != nil {
		return err
	}
	if !slices.Equal(teams, c.TeamIDs) || !slices.Equal(users, c.UserIDs) {
		v := &viewer{p: p}
		if err := v.checkScope(ctx, tx, teams, users); err != nil {
			return err
		}
	}
	if windowMoved {
		notBefore := time.Time{}
		if c.State != StateDraft {
			notBefore = now
		}
		if c.State == StateActive {
			notBefore = time.Time{} // the start is behind us and does not move
		}
		if err := checkWindow(start, end, def.Duration, notBefore); err != nil {
			return err
		}
		if c.State != StateDraft && end.IsZero() {
			return rallye.Invalid("end_time", "is required")
		}
	}
	scopeGrew := !slices.Equal(teams, c.TeamIDs) || !slices.Equal(users, c.UserIDs)
	c.Definition, c.TeamIDs, c.UserIDs, c.StartsAt, c.EndsAt = def, teams, users, start, end
	c.Missions = c.Missions[:0]
	for _, m := range def.Missions {
		c.Missions = append(c.Missions, MissionInfo{Mission: m})
	}
	c.Definition.Missions = nil
	if windowMoved && c.State != StateDraft {
		c.Version++
	}
	if err := updateChallenge(ctx, tx, c, now); err != nil {
		return err
	}
	if c.State == StateDraft {
		return replaceMissions(ctx, tx, c)
	}
	if windowMoved {
		if err := s.boards.Reschedule(ctx, tx, c.TenantID, c.ID, c.EndsAt); err != nil {
			return err
		}
	}
	if err := loadMissions(ctx, tx, []*Challenge{c}); err != nil {
		return err
	}
	if scopeGrew {
		// Newcomers count from now: the events before were not theirs to
		// count in this challenge.
		if err := s.enrollEligible(ctx, tx, c, later(c.StartsAt, now)); err != nil {
			return err
		}
	}
	if windowMoved {
		return s.schedule(ctx, tx, c)
	}
	return nil
}

// Extend moves the end of a scheduled or running challenge later; the end
// job is rescheduled (the old one finds itself stale).
//
// Errors: CodeFailedPrecondition once ended or cancelled; CodeInvalid when
// the new end is not later.
func (s *Service) Extend(ctx context.Context, p rallye.Principal, id uuid.UUID, end time.Time) (*Challenge, error) {
	return s.change(ctx, p, id, func(ctx context.Context, tx pgx.Tx, c *Challenge) error {
		if c.State != StateScheduled && c.State != StateActive {
			return failed("NOT_RUNNING", "only a scheduled or running challenge can be extended")
		}
		if !end.After(c.EndsAt) {
			return rallye.Invalid("end_time", "must be after the current end")
		}
		return s.update(ctx, tx, p, c, Patch{EndsAt: end, Mask: []string{"end_time"}})
	})
}

// EndNow ends a running challenge at once. Late events of its (now shorter)
// window still count until it is final. Errors: CodeFailedPrecondition
// unless active.
func (s *Service) EndNow(ctx context.Context, p rallye.Principal, id uuid.UUID) (*Challenge, error) {
	return s.change(ctx, p, id, func(ctx context.Context, tx pgx.Tx, c *Challenge) error {
		now := s.now()
		if c.State == StateScheduled && !now.Before(c.StartsAt) { // its start job is on its way
			if err := s.start(ctx, tx, c); err != nil {
				return err
			}
		}
		if c.State != StateActive {
			return failed("NOT_ACTIVE", "only a running challenge can be ended")
		}
		end := now
		if !end.After(c.StartsAt) {
			end = c.StartsAt.Add(time.Microsecond)
		}
		c.EndsAt, c.Version = end, c.Version+1
		if _, err := tx.Exec(ctx, `UPDATE challenges SET ends_at = $3, version = $4, updated_at = $5
			WHERE tenant_id = $1 AND id = $2`, c.TenantID, c.ID, c.EndsAt, c.Version, now); err != nil {
			return fmt.Errorf("end challenge: %w", err)
		}
		if err := s.boards.Reschedule(ctx, tx, c.TenantID, c.ID, c.EndsAt); err != nil {
			return err
		}
		_, err := s.end(ctx, tx, c)
		return err
	})
}

// Cancel cancels a challenge that is not final. The points it gave are
// taken back (its boards end at zero); no reward is granted.
func (s *Service) Cancel(ctx context.Context, p rallye.Principal, id uuid.UUID) (*Challenge, error) {
	return s.changeScoring(ctx, p, id, func(ctx context.Context, tx pgx.Tx, c *Challenge) (Receipts, error) {
		switch {
		case c.State == StateCancelled:
			return nil, nil // cancelling twice is cancelling once
		case c.Final():
			return nil, failed("FINAL", "the challenge is final")
		}
		now := s.now()
		if _, err := tx.Exec(ctx, `UPDATE challenges SET state = 'cancelled', cancelled_at = $3, updated_at = $3
			WHERE tenant_id = $1 AND id = $2 AND state <> 'cancelled'`, c.TenantID, c.ID, now); err != nil {
			return nil, fmt.Errorf("cancel challenge: %w", err)
		}
		entries, err := cancelEntries(ctx, tx, c)
		if err != nil {
			return nil, err
		}
		if _, err := tx.Exec(ctx, `UPDATE challenge_enrollments SET points = 0 WHERE tenant_id = $1 AND challenge_id = $2`,
			c.TenantID, c.ID); err != nil {
			return nil, fmt.Errorf("reset points: %w", err)
		}
		rs, err := s.record(ctx, tx, c.TenantID, entries)
		if err != nil {
			return nil, err
		}
		return rs, outbox.Append(ctx, tx, outbox.Message{TenantID: c.TenantID, Kind: MessageCancelled,
			Key: fmt.Sprintf("challenge:%s:cancelled", c.ID), Subjects: []uuid.UUID{c.ID}, OccurredAt: now,
			Payload: Cancelled{ChallengeID: c.ID, Challenge: c.Definition.Name, CancelledAt: now}})
	})
}

// cancelEntries takes back, one by one and at the instants they were
// earned (so that period boards lose them from the right periods), the
// points each event and each mission completion gave.
func cancelEntries(ctx context.Context, tx pgx.Tx, c *Challenge) ([]Entry, error) {
	es, err := enrollments(ctx, tx, c.TenantID, []uuid.UUID{c.ID}, nil, true)
	if err != nil {
		return nil, err
	}
	team := map[uuid.UUID]uuid.UUID{}
	for _, e := range es {
		team[e.UserID] = teamFor(c, e)
	}
	rows, err := tx.Query(ctx, `SELECT 'event:' || version_id, user_id, points, occurred_at FROM challenge_contributions
			WHERE tenant_id = $1 AND challenge_id = $2 AND points <> 0
		UNION ALL
		SELECT 'mission:' || mission_id || ':user:' || user_id || ':' || ordinal, user_id, points, awarded_at FROM challenge_awards
			WHERE tenant_id = $1 AND challenge_id = $2 AND revoked_at IS NULL AND points <> 0
		ORDER BY 1`, c.TenantID, c.ID)
	if err != nil {
		return nil, fmt.Errorf("read points to take back: %w", err)
	}
	var entries []Entry
	var what string
	var user uuid.UUID
	var points int64
	var at time.Time
	names := map[uuid.UUID]Text{}
	for _, m := range c.Missions {
		names[m.ID] = m.Name
	}
	_, err = pgx.ForEachRow(rows, []any{&what, &user, &points, &at}, func() error {
		cause := causeOf(c)
		cause.Cancelled, cause.Undo = true, "event"
		if rest, ok := strings.CutPrefix(what, "mission:"); ok {
			cause.Undo = "mission"
			if id, err := uuid.Parse(rest[:36]); err == nil {
				name := names[id]
				cause.MissionID, cause.Mission = id, &name
			}
		}
		entries = append(entries, Entry{
			Key: fmt.Sprintf("challenge:%s:cancel:%s", c.ID, what), UserID: user, TeamID: team[user],
			ChallengeID: c.ID, Points: -points, At: at, Reason: "cancelled", Kind: "correction", Cause: &cause,
		})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read points to take back: %w", err)
	}
	return entries, nil
}

// teamFor is the team an enrollment's points go to on the boards.
func teamFor(c *Challenge, e *enrollment) uuid.UUID {
	if c.Definition.Mode == ModeTeam {
		return e.TeamID
	}
	return uuid.Nil
}

// Join enrolls the caller in a challenge they may take part in (opt-in, or
// an auto-enrolled one that has not enrolled them yet); their events count
// from now (or the start). Joining twice changes nothing.
//
// Errors: CodeNotFound when they may not see it; CodeFailedPrecondition
// when it has ended or they are not eligible.
func (s *Service) Join(ctx context.Context, p rallye.Principal, id uuid.UUID) error {
	if !p.IsPerson() {
		return failed("NOT_A_PERSON", "this call is for people, not API keys")
	}
	return s.db.InTenant(ctx, p.TenantID, func(tx pgx.Tx) error {
		v := &viewer{p: p}
		c, _, err := v.visible(ctx, tx, id, shareLock)
		if err != nil {
			return err
		}
		if c.State != StateScheduled && c.State != StateActive {
			return failed("NOT_OPEN", "the challenge is not open: it is %s", c.State)
		}
		o, err := loadOrg(ctx, tx, p.TenantID, []uuid.UUID{p.UserID})
		if err != nil {
			return err
		}
		pl := o.place(c, p.UserID)
		if !pl.eligible {
			return failed("NOT_ELIGIBLE", "the challenge is for other teams")
		}
		// Opt-in: from now. Auto (someone who joined a team late): from when
		// they joined it, as if their first event had enrolled them.
		via, from := "opt_in", s.now()
		if c.Definition.Enrollment == EnrollAuto {
			via, from = "late", c.memberSince(pl.since)
		}
		_, err = s.enroll(ctx, tx, c, []newcomer{{user: p.UserID, team: pl.team, via: via, countsFrom: later(c.StartsAt, from)}})
		return err
	})
}

// TargetRequest sets a league participant's own target.
type TargetRequest struct {
	ChallengeID, UserID uuid.UUID
	Points              int64
}

// SetTarget sets a participant's own target in points (league format).
// Errors: CodeNotFound for someone not enrolled; CodeFailedPrecondition
// once final or outside a league.
func (s *Service) SetTarget(ctx context.Context, p rallye.Principal, req TargetRequest) error {
	id, user, target := req.ChallengeID, req.UserID, req.Points
	if target <= 0 {
		return rallye.Invalid("target_points", "must be positive")
	}
	_, err := s.change(ctx, p, id, func(ctx context.Context, tx pgx.Tx, c *Challenge) error {
		if c.Definition.Format != FormatLeague {
			return failed("NOT_A_LEAGUE", "targets are for league challenges")
		}
		if c.Final() || c.State == StateCancelled {
			return failed("FINAL", "the challenge is over")
		}
		tag, err := tx.Exec(ctx, `UPDATE challenge_enrollments SET target = $4
			WHERE tenant_id = $1 AND challenge_id = $2 AND user_id = $3`, c.TenantID, c.ID, user, target)
		if err != nil {
			return fmt.Errorf("set target: %w", err)
		}
		if tag.RowsAffected() == 0 {
			return rallye.NotFound("participant")
		}
		return nil
	})
	return err
}
