// Package leaderboard is Rallye's live rankings: one board per challenge
// (individual, and per team in team mode) and the company's period boards
// (week, month, quarter, all time).
//
// PostgreSQL holds the truth: the points ledger (idempotent on a key) and each
// board's totals. Redis holds the live rankings as sorted sets, one hash tag
// per board so that a board's keys share one Redis Cluster slot. Redis is
// only ever written after commit, with absolute totals read back from
// PostgreSQL and a per-row version, so replays and reordered writes cannot
// double-count or go backwards; a board missing from Redis is rebuilt from
// PostgreSQL under a lock, and a repair job enqueued in the scoring
// transaction heals writes that failed after commit. A challenge's final
// ranking is frozen into PostgreSQL and served from there.
//
// The challenge package drives it through Scores (Record, Publish) and Boards
// (CreateChallengeBoards, Enroll, Freeze); the API reads it through Service.
package leaderboard

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
	"golang.org/x/sync/singleflight"

	"github.com/rallyehq/rallye/internal/postgres"
	"github.com/rallyehq/rallye/internal/redisdb"
)

// Kind is what a board ranks.
type Kind string

// Board kinds.
const (
	// KindIndividual ranks people by their total points.
	KindIndividual Kind = "individual"
	// KindTeamTotal ranks a challenge's teams by the total of their members.
	KindTeamTotal Kind = "team_total"
	// KindTeamAverage ranks a challenge's teams by points per enrolled member.
	KindTeamAverage Kind = "team_average"
)

// Board is one ranking.
type Board struct {
	TenantID uuid.UUID
	ID       uuid.UUID
	Kind     Kind
	// ChallengeID is set on challenge boards, Period on period boards.
	ChallengeID uuid.UUID
	Period      Period
	// StartsAt is the start of the challenge or period, and the epoch of the
	// tie-break. EndsAt is its end (the next reset of a period board), zero
	// when open-ended.
	StartsAt time.Time
	EndsAt   time.Time
	// SharedRanks gives equal scores the same rank (1, 2, 2, 4) instead of
	// ordering them by who reached the score first.
	SharedRanks bool
	// Tick is the resolution of the tie-break.
	Tick time.Duration
	// FrozenAt is when the final ranking was copied into PostgreSQL, zero
	// while the board is live.
	FrozenAt time.Time
	// ParticipantCount is the number of ranked participants of a frozen board.
	ParticipantCount int64

	// virtual is a current period board nobody scored on yet: it has no row.
	virtual bool
}

// Frozen reports whether the board's final ranking is in PostgreSQL.
func (b Board) Frozen() bool { return !b.FrozenAt.IsZero() }

// Team reports whether the board ranks teams.
func (b Board) Team() bool { return b.Kind == KindTeamTotal || b.Kind == KindTeamAverage }

// ended reports whether the board's span is over at now.
func (b Board) ended(now time.Time) bool { return !b.EndsAt.IsZero() && !now.Before(b.EndsAt) }

// value is the metric a board ranks a row by: points, or the average per
// member in hundredths of a point.
func (b Board) value(points int64, members int) int64 {
	if b.Kind == KindTeamAverage {
		return average(points, members)
	}
	return points
}

// score is a row's sorted-set score.
func (b Board) score(r scoreRow) float64 {
	return composite(b.value(r.Points, r.Members), r.ReachedAt, b.StartsAt, b.Tick)
}

// scoreRow is a board's total for one member, as stored in PostgreSQL.
type scoreRow struct {
	Member    uuid.UUID
	Points    int64
	ReachedAt time.Time // zero: enrolled, never scored
	Members   int
	Version   int64
}

// JobInserter enqueues jobs inside a transaction; *river.Client[pgx.Tx] is one.
type JobInserter interface {
	InsertManyTx(ctx context.Context, tx pgx.Tx, params []river.InsertManyParams) ([]*rivertype.JobInsertResult, error)
}

// Deps are what the service needs.
type Deps struct {
	DB    *postgres.DB
	Redis redis.UniversalClient
	Keys  redisdb.Keyspace
	Log   *slog.Logger
	// Events receives domain events (nil: they are logged).
	Events Events
	// Now is the clock (nil: time.Now).
	Now func() time.Time
	// WatchRefresh is how often a watched board is read again without an
	// announcement (0: 10 s).
	WatchRefresh time.Duration
	// RepairDelay is how long a scoring transaction's repair job waits, so
	// that a burst of changes shares one job (0: 1 s).
	RepairDelay time.Duration
}

// Service reads boards for the API, streams their changes and keeps Redis in
// step with PostgreSQL. Scores and Boards are its faces for the challenge
// package.
type Service struct {
	// Scores records points.
	Scores *Scores
	// Boards creates, fills and freezes challenge boards.
	Boards *Boards

	db    *postgres.DB
	redis redis.UniversalClient
	// reads carries the read path's scripts: concurrent requests share
	// pipelines, so under load one write and one read on the socket serve
	// many of them (and Redis parses them in one go).
	reads  redis.UniversalClient
	keys   redisdb.Keyspace
	log    *slog.Logger
	events Events
	now    func() time.Time
	jobs   JobInserter
	live   *hub
	// watchRefresh and repairDelay are Deps.WatchRefresh and
	// Deps.RepairDelay.
	watchRefresh, repairDelay time.Duration
	// stopping ends the watch streams when the server shuts down, so that
	// graceful shutdown does not wait for them (clients reconnect).
	stopping  chan struct{}
	closeOnce sync.Once

	rebuilds singleflight.Group
	// Caches of what rarely changes, so that a read costs one Redis round
	// trip: board settings, who may see a board, display names.
	boardCache  *ttlCache[boardKey, Board]
	accessCache *ttlCache[accessKey, access]
	nameCache   *ttlCache[boardKey, string]
	zoneCache   *ttlCache[uuid.UUID, *time.Location]
}

type boardKey struct{ tenant, id uuid.UUID }

// Cache lifetimes. A board's settings only change when it is frozen (and a
// stale entry is detected then, see Ranking); access follows enrolments and
// team changes within accessTTL.
const (
	boardTTL  = 30 * time.Second
	accessTTL = 30 * time.Second
	nameTTL   = 5 * time.Minute
	zoneTTL   = time.Minute
)

// New returns the service. Call SetJobs before recording points.
func New(d Deps) *Service {
	s := &Service{
		db: d.DB, redis: d.Redis, reads: d.Redis, keys: d.Keys, log: d.Log, events: d.Events, now: d.Now,
		boardCache:  newTTLCache[boardKey, Board](100_000, boardTTL),
		accessCache: newTTLCache[accessKey, access](100_000, accessTTL),
		nameCache:   newTTLCache[boardKey, string](100_000, nameTTL),
		zoneCache:   newTTLCache[uuid.UUID, *time.Location](10_000, zoneTTL),
		stopping:    make(chan struct{}),
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if ap, err := d.Redis.AutoPipeline(); err == nil {
		s.reads = ap
	} else {
		s.log.Warn("leaderboard: reads not pipelined", "error", err)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.watchRefresh = d.WatchRefresh; s.watchRefresh <= 0 {
		s.watchRefresh = watchRefresh
	}
	if s.repairDelay = d.RepairDelay; s.repairDelay <= 0 {
		s.repairDelay = repairDelay
	}
	if s.events == nil {
		s.events = LogEvents{Log: s.log}
	}
	s.Scores = &Scores{s: s}
	s.Boards = &Boards{s: s}
	s.live = newHub(d.Redis, d.Keys, s.log)
	return s
}

// SetJobs gives the service the job queue its transactions enqueue repair
// jobs on. It is separate from New because the queue's workers need the
// service first.
func (s *Service) SetJobs(j JobInserter) { s.jobs = j }

// Close ends the watch streams and stops the live feeds. The server calls it
// when it starts shutting down.
func (s *Service) Close() {
	s.closeOnce.Do(func() {
		close(s.stopping)
		s.live.close()
	})
}

func (s *Service) inTenant(ctx context.Context, tenantID uuid.UUID, fn postgres.TxFunc) error {
	return s.db.InTenant(ctx, tenantID, fn)
}

func errorf(format string, args ...any) error { return fmt.Errorf("leaderboard: "+format, args...) }
