// Package challenge runs sales challenges: their definitions and templates
// (onboarding, upsell, prospecting), participants, lifecycle, missions tied
// to sales KPIs, scoring, and the reads reps and managers make.
//
// Lifecycle: draft → scheduled → active → ended, or cancelled. Publishing a
// draft schedules River jobs at the start and end instants (in the same
// transaction); each job carries the challenge's version, bumped whenever the
// window moves, so a stale or duplicated job does nothing, and every
// transition is an UPDATE ... WHERE state = ..., so two servers never end one
// challenge twice. An ended challenge still counts the late events of its
// window; it becomes final (frozen, ranks and rewards granted once) when
// the grace period has passed and every source's data reaches the end, or
// the maximum data wait has passed (see Service.Finalize).
//
// Progress: the package consumes the event change feed (Progress). Each
// change updates, incrementally and in the feed's transaction, the
// accumulators of the missions and the points of the scoring rules that read
// its event type, for the challenges whose window holds the event. What a
// version gave is recorded, so that its -1 (a correction, a retraction, a
// reopened deal) takes back exactly that. Points go to the leaderboard
// through the Scores seam with deterministic idempotency keys.
package challenge

import (
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/rallyehq/rallye/internal/postgres"
)

// State is where a challenge is in its lifecycle.
type State string

// States. Final (frozen) is an ended challenge with FinalizedAt set.
const (
	StateDraft     State = "draft"
	StateScheduled State = "scheduled"
	StateActive    State = "active"
	StateEnded     State = "ended"
	StateCancelled State = "cancelled"
)

// MissionInfo is a mission of a stored challenge, with its id.
type MissionInfo struct {
	ID uuid.UUID
	Mission
}

// Challenge is a stored challenge.
type Challenge struct {
	TenantID    uuid.UUID
	ID          uuid.UUID
	TemplateKey string
	// Definition's Missions are in Missions, with their ids.
	Definition Definition
	Missions   []MissionInfo
	State      State
	TeamIDs    []uuid.UUID
	UserIDs    []uuid.UUID
	// StartsAt and EndsAt are zero in a draft that leaves them to the
	// publication.
	StartsAt, EndsAt time.Time
	TimeZone         string
	Version          int64
	CreatedBy        uuid.UUID
	CreatedAt        time.Time
	UpdatedAt        time.Time
	PublishedAt      time.Time
	StartedAt        time.Time
	EndedAt          time.Time
	FinalizedAt      time.Time
	CancelledAt      time.Time
	boardsAt         time.Time
	// HoldoutShare and HoldoutSeed are those of the holdout drawn at
	// creation (0 and 0: none); HeldOut are the people kept out, sorted:
	// they are not eligible, so they neither see nor join the challenge.
	HoldoutShare float64
	HoldoutSeed  int64
	HeldOut      []uuid.UUID
}

// Final reports whether the results are final and frozen.
func (c *Challenge) Final() bool { return !c.FinalizedAt.IsZero() }

// Location is the time zone the challenge's expressions read.
func (c *Challenge) Location() *time.Location {
	loc, err := time.LoadLocation(c.TimeZone)
	if err != nil {
		return time.UTC
	}
	return loc
}

// EarliestFinal is when the results can become final if every source's
// data is in; LatestFinal when they become final regardless.
func (c *Challenge) EarliestFinal() time.Time {
	if c.EndsAt.IsZero() {
		return time.Time{}
	}
	return c.EndsAt.Add(time.Duration(c.Definition.Grace))
}

// LatestFinal is when the results become final even if a source's data
// has not reached the end.
func (c *Challenge) LatestFinal() time.Time {
	if c.EndsAt.IsZero() {
		return time.Time{}
	}
	return c.EndsAt.Add(time.Duration(c.Definition.MaxDataWait))
}

// contains reports whether t falls in the window.
func (c *Challenge) contains(t time.Time) bool {
	return !c.StartsAt.IsZero() && !t.Before(c.StartsAt) && t.Before(c.EndsAt)
}

// running reports whether the challenge runs at now: active, or scheduled
// with its start passed (its start job is on its way).
func (c *Challenge) running(now time.Time) bool {
	return c.State == StateActive || c.State == StateScheduled && !now.Before(c.StartsAt) && now.Before(c.EndsAt)
}

// StateAt is the state the challenge shows at now. The lifecycle jobs move
// the stored state at the start and end instants, but the job queue takes
// up to a few seconds to pick a scheduled job: in between, reads show what
// the clock says (the window itself is exact either way: an event counts
// when it falls in [start, end)).
func (c *Challenge) StateAt(now time.Time) State {
	switch {
	case c.State != StateScheduled && c.State != StateActive || c.StartsAt.IsZero():
		return c.State
	case !now.Before(c.EndsAt):
		return StateEnded
	case !now.Before(c.StartsAt):
		return StateActive
	}
	return c.State
}

// shownStateSQL is StateAt in SQL, for a challenges row and the instant in
// parameter now (like "$3").
func shownStateSQL(now string) string {
	return `CASE WHEN state NOT IN ('scheduled', 'active') OR starts_at IS NULL THEN state
		WHEN ends_at <= ` + now + ` THEN 'ended' WHEN starts_at <= ` + now + ` THEN 'active' ELSE state END`
}

// memberSince is when a person's membership of a challenge team starts to
// count: from the start for people already in the teams at publication (a
// challenge published "now" starts at the second, a little before), from
// when they joined for the others.
func (c *Challenge) memberSince(joined time.Time) time.Time {
	if !c.PublishedAt.IsZero() && !joined.After(c.PublishedAt) {
		return c.StartsAt
	}
	return joined
}

// live reports whether events still move the challenge.
func (c *Challenge) live() bool {
	return (c.State == StateScheduled || c.State == StateActive || c.State == StateEnded) && !c.Final()
}

func (c *Challenge) mission(id uuid.UUID) (MissionInfo, int, bool) {
	for i, m := range c.Missions {
		if m.ID == id {
			return m, i, true
		}
	}
	return MissionInfo{}, -1, false
}

// Deps are what the service needs.
type Deps struct {
	DB  *postgres.DB
	Log *slog.Logger
	// Jobs enqueues the lifecycle jobs (the River client); it may be set
	// later with SetJobs, as the client needs the workers first.
	Jobs    JobInserter
	Scores  Scores
	Boards  Boards
	Rewards Rewards
	// Now is the clock (time.Now by default).
	Now func() time.Time
	// FinalizeRecheck is how often an ended challenge waiting for data
	// checks again (one minute by default).
	FinalizeRecheck time.Duration
}

// Service is the challenges' use cases.
type Service struct {
	db       *postgres.DB
	log      *slog.Logger
	jobs     JobInserter
	scores   Scores
	boards   Boards
	rewards  Rewards
	now      func() time.Time
	recheck  time.Duration
	mu       sync.Mutex
	compiled map[compiledKey]*compiled
}

type compiledKey struct {
	id      uuid.UUID
	updated time.Time
}

// New returns the service.
func New(d Deps) *Service {
	s := &Service{
		db: d.DB, log: d.Log, jobs: d.Jobs, scores: d.Scores, boards: d.Boards, rewards: d.Rewards,
		now: d.Now, recheck: d.FinalizeRecheck, compiled: map[compiledKey]*compiled{},
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.recheck <= 0 {
		s.recheck = time.Minute
	}
	if s.rewards == nil {
		s.rewards = GrantTable{}
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	return s
}

// SetJobs sets the job inserter (before the service is used).
func (s *Service) SetJobs(j JobInserter) { s.jobs = j }

func newID() uuid.UUID { return uuid.Must(uuid.NewV7()) }

// compiledFor returns c's compiled definition, cached: a published
// challenge's missions and rules never change, and updated_at keys drafts.
func (s *Service) compiledFor(c *Challenge) (*compiled, error) {
	k := compiledKey{c.ID, c.UpdatedAt}
	s.mu.Lock()
	cc, ok := s.compiled[k]
	s.mu.Unlock()
	if ok {
		return cc, nil
	}
	d := c.Definition
	d.Missions = make([]Mission, len(c.Missions))
	for i, m := range c.Missions {
		d.Missions[i] = m.Mission
	}
	cc, err := compile(d, "definition.")
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	if len(s.compiled) > 1000 {
		clear(s.compiled) // a simple bound: recompiling is cheap
	}
	s.compiled[k] = cc
	s.mu.Unlock()
	return cc, nil
}
