package challenge

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/rallyehq/rallye/internal/event"
	"github.com/rallyehq/rallye/internal/outbox"
	"github.com/rallyehq/rallye/internal/rallye"
)

// Progress is the change-feed consumer that moves missions and points.
// Register it with event.Feed.Register.
type Progress struct{ s *Service }

// Progress returns the service's feed consumer.
func (s *Service) Progress() *Progress { return &Progress{s: s} }

// Name implements event.Consumer.
func (*Progress) Name() string { return ProgressConsumer }

// Consume implements event.Consumer: it applies changes, in feed order, to
// the challenges whose window holds them and that read their type; the
// points are published after commit.
func (pc *Progress) Consume(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, changes []event.Change) (event.Applied, error) {
	b, err := pc.s.newBatch(ctx, tx, tenantID, changes)
	if err != nil || b == nil {
		return event.Applied{}, err
	}
	for _, ch := range changes {
		if err := b.apply(ch); err != nil {
			return event.Applied{}, err
		}
	}
	receipts, err := b.flush()
	if err != nil {
		return event.Applied{}, err
	}
	out := event.Applied{RuleErrors: b.ruleErrors}
	if len(receipts) > 0 {
		out.After = receipts.Publish
	}
	return out, nil
}

type enrollmentKey struct{ challenge, user uuid.UUID }
type progressKey struct{ mission, subject uuid.UUID }
type contributionKey struct{ challenge, version uuid.UUID }

// contributionRow is what a counted event version gave a challenge.
type contributionRow struct {
	challenge, version, user, team uuid.UUID
	at                             time.Time
	points                         int64
	missions                       []contribution
	// stored: the row exists in the database; present: it should.
	stored, present, changed bool
}

// batch applies changes (or an approval) to challenges inside one
// transaction, holding the rows it touches locked, and writes them back at
// the end.
type batch struct {
	s      *Service
	ctx    context.Context
	tx     pgx.Tx
	tenant uuid.UUID

	challenges []*Challenge
	compiled   map[uuid.UUID]*compiled
	enr        map[enrollmentKey]*enrollment
	prog       map[progressKey]*progress
	contrib    map[contributionKey]*contributionRow
	entries    []Entry
	// messages are the mission completions to announce, appended to the
	// outbox at the end of flush.
	messages []outbox.Message
	// approvedBy names the reviewer when the batch applies an approval.
	approvedBy string
	// ruleErrors are the rules and missions that could not be evaluated
	// for a change: the change gave nothing through them.
	ruleErrors []event.RuleError
}

// newBatch prepares a batch for changes: the live challenges they may
// concern (locked in share mode, so that a concurrent finalization waits or
// is waited for), their enrollments, contributions and progress rows (locked
// for update). nil when no challenge is concerned.
func (s *Service) newBatch(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, changes []event.Change) (*batch, error) {
	var types []string
	var users, versions []uuid.UUID
	var lo, hi time.Time
	for _, ch := range changes {
		e := ch.Event
		if e.UserID == uuid.Nil {
			continue // an event without a rep counts for no participant
		}
		types = append(types, string(e.Type))
		users = append(users, e.UserID)
		versions = append(versions, e.VersionID)
		if lo.IsZero() || e.OccurredAt.Before(lo) {
			lo = e.OccurredAt
		}
		if e.OccurredAt.After(hi) {
			hi = e.OccurredAt
		}
	}
	if len(users) == 0 {
		return nil, nil
	}
	slices.Sort(types)
	rows, err := tx.Query(ctx, `SELECT `+challengeColumns+` FROM challenges
		WHERE tenant_id = $1 AND state IN ('scheduled', 'active', 'ended') AND finalized_at IS NULL
		  AND event_types && $2 AND starts_at <= $3 AND ends_at > $4
		ORDER BY id FOR SHARE`, tenantID, slices.Compact(types), hi, lo)
	if err != nil {
		return nil, fmt.Errorf("read live challenges: %w", err)
	}
	cs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*Challenge, error) { return scanChallenge(r) })
	if err != nil {
		return nil, fmt.Errorf("read live challenges: %w", err)
	}
	if len(cs) == 0 {
		return nil, nil
	}
	b := &batch{s: s, ctx: ctx, tx: tx, tenant: tenantID, challenges: cs, compiled: map[uuid.UUID]*compiled{},
		enr: map[enrollmentKey]*enrollment{}, prog: map[progressKey]*progress{}, contrib: map[contributionKey]*contributionRow{}}
	if err := loadMissions(ctx, tx, cs); err != nil {
		return nil, err
	}
	ids := make([]uuid.UUID, len(cs))
	for i, c := range cs {
		ids[i] = c.ID
		if b.compiled[c.ID], err = s.compiledFor(c); err != nil {
			return nil, err
		}
	}
	users = uniqueIDs(users)
	if err := b.loadEnrollments(ids, users); err != nil {
		return nil, err
	}
	if err := b.enrollLate(changes); err != nil {
		return nil, err
	}
	if err := b.loadContributions(ids, uniqueIDs(versions)); err != nil {
		return nil, err
	}
	subjects := slices.Clone(users)
	for _, e := range b.enr {
		if e.TeamID != uuid.Nil {
			subjects = append(subjects, e.TeamID)
		}
	}
	if err := b.loadProgress(ids, uniqueIDs(subjects)); err != nil {
		return nil, err
	}
	return b, nil
}

func (b *batch) loadEnrollments(challenges, users []uuid.UUID) error {
	es, err := enrollments(b.ctx, b.tx, b.tenant, challenges, users, true)
	if err != nil {
		return err
	}
	for _, e := range es {
		if _, ok := b.enr[enrollmentKey{e.ChallengeID, e.UserID}]; !ok { // in memory, possibly changed
			b.enr[enrollmentKey{e.ChallengeID, e.UserID}] = e
		}
	}
	return nil
}

// enrollLate enrolls, in auto-enrolled challenges, the people whose events
// arrive while they are not enrolled yet but may take part (they joined a
// team of the challenge after its publication).
func (b *batch) enrollLate(changes []event.Change) error {
	want := map[uuid.UUID][]uuid.UUID{} // challenge -> people to check
	seen := map[enrollmentKey]bool{}
	var people []uuid.UUID
	for _, ch := range changes {
		e := ch.Event
		if ch.Sign < 0 || e.UserID == uuid.Nil {
			continue
		}
		for _, c := range b.challenges {
			k := enrollmentKey{c.ID, e.UserID}
			if seen[k] || b.enr[k] != nil || c.Definition.Enrollment != EnrollAuto || !c.contains(e.OccurredAt) ||
				!b.compiled[c.ID].types[e.Type] {
				continue
			}
			seen[k] = true
			want[c.ID] = append(want[c.ID], e.UserID)
			people = append(people, e.UserID)
		}
	}
	if len(people) == 0 {
		return nil
	}
	o, err := loadOrg(b.ctx, b.tx, b.tenant, uniqueIDs(people))
	if err != nil {
		return err
	}
	for _, c := range b.challenges {
		var in []newcomer
		for _, u := range want[c.ID] {
			if pl := o.place(c, u); pl.eligible {
				in = append(in, newcomer{user: u, team: pl.team, via: "late", countsFrom: later(c.StartsAt, c.memberSince(pl.since))})
			}
		}
		created, err := b.s.enroll(b.ctx, b.tx, c, in)
		if err != nil {
			return err
		}
		for _, e := range created {
			b.enr[enrollmentKey{c.ID, e.UserID}] = e
		}
	}
	return nil
}

func (b *batch) loadContributions(challenges, versions []uuid.UUID) error {
	rows, err := b.tx.Query(b.ctx, `SELECT challenge_id, version_id, user_id, coalesce(team_id, '00000000-0000-0000-0000-000000000000'),
			occurred_at, points, missions
		FROM challenge_contributions WHERE tenant_id = $1 AND challenge_id = ANY($2) AND version_id = ANY($3)
		ORDER BY challenge_id, version_id FOR UPDATE`, b.tenant, challenges, versions)
	if err != nil {
		return fmt.Errorf("read contributions: %w", err)
	}
	var r contributionRow
	var ms []byte
	_, err = pgx.ForEachRow(rows, []any{&r.challenge, &r.version, &r.user, &r.team, &r.at, &r.points, &ms}, func() error {
		row := r
		row.stored, row.present = true, true
		if err := json.Unmarshal(ms, &row.missions); err != nil {
			return fmt.Errorf("contribution missions: %w", err)
		}
		b.contrib[contributionKey{row.challenge, row.version}] = &row
		return nil
	})
	if err != nil {
		return fmt.Errorf("read contributions: %w", err)
	}
	return nil
}

const progressColumns = `mission_id, subject_id, volume, hits, total, samples, target, met, completed, completed_at, completions`

func scanProgress(r pgx.Row) (*progress, error) {
	p := &progress{stored: true}
	var done *time.Time
	err := r.Scan(&p.MissionID, &p.SubjectID, &p.Volume, &p.Hits, &p.Total, &p.Samples, &p.Target, &p.Met, &p.Completed, &done, &p.Completions)
	if done != nil {
		p.CompletedAt = *done
	}
	return p, err
}

func (b *batch) loadProgress(challenges, subjects []uuid.UUID) error {
	rows, err := b.tx.Query(b.ctx, `SELECT `+progressColumns+` FROM challenge_progress
		WHERE tenant_id = $1 AND challenge_id = ANY($2) AND subject_id = ANY($3)
		ORDER BY challenge_id, mission_id, subject_id FOR UPDATE`, b.tenant, challenges, subjects)
	if err != nil {
		return fmt.Errorf("read progress: %w", err)
	}
	ps, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*progress, error) { return scanProgress(r) })
	if err != nil {
		return fmt.Errorf("read progress: %w", err)
	}
	for _, p := range ps {
		if _, ok := b.prog[progressKey{p.MissionID, p.SubjectID}]; !ok {
			b.prog[progressKey{p.MissionID, p.SubjectID}] = p
		}
	}
	return nil
}

// progressFor returns the (possibly new) progress of a mission for a
// subject; the subject's rows must have been loaded.
func (b *batch) progressFor(mission, subject uuid.UUID) *progress {
	k := progressKey{mission, subject}
	p := b.prog[k]
	if p == nil {
		p = &progress{MissionID: mission, SubjectID: subject}
		b.prog[k] = p
	}
	return p
}

// apply applies one change to every challenge it concerns.
func (b *batch) apply(ch event.Change) error {
	e := ch.Event
	if e.UserID == uuid.Nil {
		return nil
	}
	for _, c := range b.challenges {
		cc := b.compiled[c.ID]
		if !c.contains(e.OccurredAt) || !cc.types[e.Type] {
			continue
		}
		var err error
		if ch.Sign > 0 {
			err = b.give(c, cc, ch)
		} else {
			err = b.takeBack(c, cc, ch)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// give applies a version that starts counting.
func (b *batch) give(c *Challenge, cc *compiled, ch event.Change) error {
	e := ch.Event
	k := contributionKey{c.ID, e.VersionID}
	if r := b.contrib[k]; r != nil && r.present {
		return nil // already given: a replayed change
	}
	en := b.enr[enrollmentKey{c.ID, e.UserID}]
	if en == nil || e.OccurredAt.Before(en.CountsFrom) {
		return nil
	}
	loc := c.Location()
	row := &contributionRow{challenge: c.ID, version: e.VersionID, user: e.UserID, team: en.TeamID, at: e.OccurredAt,
		present: true, changed: true}
	cause := causeOf(c)
	cause.EventType = string(e.Type)
	for i, r := range cc.rules {
		p, ok, err := r.points(e, loc)
		if err != nil {
			b.ruleErrors = append(b.ruleErrors, event.RuleError{
				Rule: fmt.Sprintf("challenge %s rule %d", c.ID, i+1), Seq: ch.Seq, Event: e, Err: err})
		}
		if ok {
			row.points += p
			if len(cause.Rules) < 3 {
				cause.Rules = append(cause.Rules, r.Label)
			}
		}
	}
	affected := map[int]bool{}
	for i, m := range cc.missions {
		if m.Scope == ScopeTeam && en.TeamID == uuid.Nil {
			continue
		}
		ct, ok, err := m.contribute(e, loc)
		if err != nil {
			b.ruleErrors = append(b.ruleErrors, event.RuleError{
				Rule: fmt.Sprintf("challenge %s mission %s", c.ID, m.Key), Seq: ch.Seq, Event: e, Err: err})
		}
		if ok {
			ct.Mission = c.Missions[i].ID.String()
			row.missions = append(row.missions, ct)
			affected[i] = true
		}
	}
	if row.points == 0 && len(row.missions) == 0 {
		return nil
	}
	if old := b.contrib[k]; old != nil {
		row.stored = old.stored
	}
	b.contrib[k] = row
	b.applyRow(c, cc, row, +1)
	b.points(c, en, row.points, fmt.Sprintf("challenge:%s:event:%s:change:%d", c.ID, e.VersionID, ch.Seq),
		e.OccurredAt, "event:"+e.VersionID.String(), "scoring", &cause)
	return b.settle(c, en, affected, e.OccurredAt)
}

// takeBack undoes exactly what a version gave, if it gave anything.
func (b *batch) takeBack(c *Challenge, cc *compiled, ch event.Change) error {
	e := ch.Event
	row := b.contrib[contributionKey{c.ID, e.VersionID}]
	if row == nil || !row.present {
		return nil
	}
	en := b.enr[enrollmentKey{c.ID, row.user}]
	if en == nil {
		return fmt.Errorf("challenge %s: contribution of %s without enrollment", c.ID, row.user)
	}
	row.present, row.changed = false, true
	affected := b.applyRow(c, cc, row, -1)
	cause := causeOf(c)
	cause.EventType, cause.Undo = string(e.Type), "event"
	b.points(c, en, -row.points, fmt.Sprintf("challenge:%s:event:%s:change:%d", c.ID, e.VersionID, ch.Seq),
		row.at, "correction", "correction", &cause)
	return b.settle(c, en, affected, row.at)
}

// applyRow adds or takes back a contribution's mission values, and returns
// the missions touched.
func (b *batch) applyRow(c *Challenge, cc *compiled, row *contributionRow, sign int) map[int]bool {
	affected := map[int]bool{}
	for _, ct := range row.missions {
		for i, m := range c.Missions {
			if m.ID.String() != ct.Mission {
				continue
			}
			subject := row.user
			if m.Scope == ScopeTeam {
				subject = row.team
			}
			b.progressFor(m.ID, subject).apply(cc.missions[i].Mission, ct, sign)
			affected[i] = true
		}
	}
	return affected
}

// points moves an enrollment's points and queues the leaderboard entry.
func (b *batch) points(c *Challenge, en *enrollment, pts int64, key string, at time.Time, reason, kind string, cause *Cause) {
	if pts == 0 {
		return
	}
	en.Points += pts
	en.dirty = true
	b.entries = append(b.entries, Entry{Key: key, UserID: en.UserID, TeamID: teamFor(c, en), ChallengeID: c.ID,
		Points: pts, At: at, Reason: reason, Kind: kind, Cause: cause})
}

// announce queues a mission's completion (or its taking back) for the
// outbox.
func (b *batch) announce(c *Challenge, m MissionInfo, user uuid.UUID, ordinal int, points int64, at time.Time, done bool) {
	kind := MessageMissionCompleted
	if !done {
		kind = MessageMissionUncompleted
	}
	b.messages = append(b.messages, outbox.Message{TenantID: b.tenant, Kind: kind,
		Key:      fmt.Sprintf("challenge:%s:mission:%s:user:%s:%s:%d", c.ID, m.ID, user, kind, ordinal),
		Subjects: []uuid.UUID{user, c.ID, m.ID}, OccurredAt: b.s.now(),
		Payload: MissionCompletion{ChallengeID: c.ID, Challenge: c.Definition.Name, MissionID: m.ID, Mission: m.Name,
			UserID: user, Ordinal: ordinal, Points: points, Manual: m.IsManual(), At: at}})
}

// settle re-evaluates the missions touched for the participant (and their
// team) and completes or un-completes them: a mission is completed when its
// condition holds and, in a sequential challenge, the previous one is
// completed.
func (b *batch) settle(c *Challenge, en *enrollment, affected map[int]bool, at time.Time) error {
	cc := b.compiled[c.ID]
	if c.Definition.Sequential {
		prevDone := true
		for i, m := range c.Missions {
			p := b.progressFor(m.ID, en.UserID)
			if !m.IsManual() {
				b.setMet(p, conditionMet(cc.missions[i].Mission, p))
			}
			if err := b.complete(c, m, p, p.Met && prevDone, at); err != nil {
				return err
			}
			prevDone = p.Completed
		}
		return nil
	}
	for i := range c.Missions {
		if !affected[i] {
			continue
		}
		m := c.Missions[i]
		subject := en.UserID
		if m.Scope == ScopeTeam {
			subject = en.TeamID
		}
		p := b.progressFor(m.ID, subject)
		if !m.IsManual() {
			b.setMet(p, conditionMet(cc.missions[i].Mission, p))
		}
		if err := b.complete(c, m, p, p.Met, at); err != nil {
			return err
		}
	}
	return nil
}

func (b *batch) setMet(p *progress, met bool) {
	if p.Met != met {
		p.Met, p.dirty = met, true
	}
}

// complete moves a mission's completion to done, awarding its points to
// the subject (every enrolled member of the team for team missions) under
// the keys of its n-th completion, or taking them back.
func (b *batch) complete(c *Challenge, m MissionInfo, p *progress, done bool, at time.Time) error {
	if p.Completed == done {
		return nil
	}
	p.dirty = true
	if !done {
		ordinal := p.Completions
		p.Completed, p.CompletedAt = false, time.Time{}
		rows, err := b.tx.Query(b.ctx, `UPDATE challenge_awards SET revoked_at = $6
			WHERE tenant_id = $1 AND challenge_id = $2 AND mission_id = $3 AND subject_id = $4 AND ordinal = $5
			  AND revoked_at IS NULL
			RETURNING user_id, points, awarded_at`, b.tenant, c.ID, m.ID, p.SubjectID, ordinal, b.s.now())
		if err != nil {
			return fmt.Errorf("revoke mission: %w", err)
		}
		type award struct {
			user   uuid.UUID
			points int64
			at     time.Time
		}
		var aw []award
		var a award
		if _, err := pgx.ForEachRow(rows, []any{&a.user, &a.points, &a.at}, func() error { aw = append(aw, a); return nil }); err != nil {
			return fmt.Errorf("revoke mission: %w", err)
		}
		for _, a := range aw {
			en, err := b.enrollmentOf(c, a.user)
			if err != nil {
				return err
			}
			cause := causeOf(c)
			cause.MissionID, cause.Mission, cause.Undo = m.ID, &m.Name, "mission"
			b.points(c, en, -a.points, fmt.Sprintf("challenge:%s:mission:%s:user:%s:revoke:%d", c.ID, m.ID, a.user, ordinal),
				a.at, "correction", "correction", &cause)
			b.announce(c, m, a.user, ordinal, a.points, a.at, false)
		}
		return nil
	}
	p.Completions++
	p.Completed, p.CompletedAt = true, at
	recipients := []uuid.UUID{p.SubjectID}
	if m.Scope == ScopeTeam {
		var err error
		if recipients, err = b.teamMembers(c, p.SubjectID); err != nil {
			return err
		}
	}
	for _, u := range recipients {
		en, err := b.enrollmentOf(c, u)
		if err != nil {
			return err
		}
		tag, err := b.tx.Exec(b.ctx, `INSERT INTO challenge_awards (tenant_id, challenge_id, mission_id, user_id, ordinal,
				subject_id, points, awarded_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING`,
			b.tenant, c.ID, m.ID, u, p.Completions, p.SubjectID, m.Points, at)
		if err != nil {
			return fmt.Errorf("award mission: %w", err)
		}
		if tag.RowsAffected() == 0 {
			continue
		}
		cause := causeOf(c)
		cause.MissionID, cause.Mission, cause.ApprovedBy = m.ID, &m.Name, b.approvedBy
		b.points(c, en, m.Points, fmt.Sprintf("challenge:%s:mission:%s:user:%s:complete:%d", c.ID, m.ID, u, p.Completions),
			at, "mission:"+m.ID.String(), "mission", &cause)
		b.announce(c, m, u, p.Completions, m.Points, at, true)
	}
	return nil
}

// enrollmentOf returns a participant's enrollment, loading (and locking) it
// when the batch does not hold it yet.
func (b *batch) enrollmentOf(c *Challenge, user uuid.UUID) (*enrollment, error) {
	if en := b.enr[enrollmentKey{c.ID, user}]; en != nil {
		return en, nil
	}
	if err := b.loadEnrollments([]uuid.UUID{c.ID}, []uuid.UUID{user}); err != nil {
		return nil, err
	}
	en := b.enr[enrollmentKey{c.ID, user}]
	if en == nil {
		return nil, fmt.Errorf("challenge %s: %s is not enrolled", c.ID, user)
	}
	return en, nil
}

// teamMembers lists the people enrolled for a team, loading their
// enrollments.
func (b *batch) teamMembers(c *Challenge, team uuid.UUID) ([]uuid.UUID, error) {
	rows, err := b.tx.Query(b.ctx, `SELECT user_id FROM challenge_enrollments
		WHERE tenant_id = $1 AND challenge_id = $2 AND team_id = $3 ORDER BY user_id`, b.tenant, c.ID, team)
	if err != nil {
		return nil, fmt.Errorf("read team members: %w", err)
	}
	users, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
	if err != nil {
		return nil, fmt.Errorf("read team members: %w", err)
	}
	var missing []uuid.UUID
	for _, u := range users {
		if b.enr[enrollmentKey{c.ID, u}] == nil {
			missing = append(missing, u)
		}
	}
	if len(missing) > 0 {
		if err := b.loadEnrollments([]uuid.UUID{c.ID}, missing); err != nil {
			return nil, err
		}
	}
	return users, nil
}

// flush writes back what the batch changed and records the points.
func (b *batch) flush() (Receipts, error) {
	ctx, tx := b.ctx, b.tx
	now := b.s.now()

	var cs, us []uuid.UUID
	var pts []int64
	keys := make([]enrollmentKey, 0, len(b.enr))
	for k, e := range b.enr {
		if e.dirty {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, func(x, y enrollmentKey) int {
		return cmp.Or(compareIDs(x.challenge, y.challenge), compareIDs(x.user, y.user))
	})
	for _, k := range keys {
		cs, us, pts = append(cs, k.challenge), append(us, k.user), append(pts, b.enr[k].Points)
	}
	if len(keys) > 0 {
		if _, err := tx.Exec(ctx, `UPDATE challenge_enrollments e SET points = x.p
			FROM unnest($2::uuid[], $3::uuid[], $4::bigint[]) AS x(c, u, p)
			WHERE e.tenant_id = $1 AND e.challenge_id = x.c AND e.user_id = x.u`, b.tenant, cs, us, pts); err != nil {
			return nil, fmt.Errorf("write points: %w", err)
		}
	}

	missionChallenge := map[uuid.UUID]uuid.UUID{}
	for _, c := range b.challenges {
		for _, m := range c.Missions {
			missionChallenge[m.ID] = c.ID
		}
	}
	// Rows are written in key order, as they were locked.
	pkeys := make([]progressKey, 0, len(b.prog))
	for k, p := range b.prog {
		if p.dirty {
			pkeys = append(pkeys, k)
		}
	}
	slices.SortFunc(pkeys, func(x, y progressKey) int {
		return cmp.Or(compareIDs(missionChallenge[x.mission], missionChallenge[y.mission]),
			compareIDs(x.mission, y.mission), compareIDs(x.subject, y.subject))
	})
	pb := &pgx.Batch{}
	for _, k := range pkeys {
		p := b.prog[k]
		pb.Queue(`INSERT INTO challenge_progress (tenant_id, challenge_id, mission_id, subject_id, volume, hits, total,
				samples, target, met, completed, completed_at, completions, updated_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
			ON CONFLICT (tenant_id, challenge_id, mission_id, subject_id) DO UPDATE SET volume = excluded.volume,
				hits = excluded.hits, total = excluded.total, samples = excluded.samples, met = excluded.met,
				completed = excluded.completed, completed_at = excluded.completed_at, completions = excluded.completions,
				updated_at = excluded.updated_at`,
			b.tenant, missionChallenge[p.MissionID], p.MissionID, p.SubjectID, p.Volume, p.Hits, p.Total,
			nonNil(p.Samples), p.Target, p.Met, p.Completed, nullTime(p.CompletedAt), p.Completions, now)
	}
	ckeys := make([]contributionKey, 0, len(b.contrib))
	for k := range b.contrib {
		ckeys = append(ckeys, k)
	}
	slices.SortFunc(ckeys, func(x, y contributionKey) int {
		return cmp.Or(compareIDs(x.challenge, y.challenge), compareIDs(x.version, y.version))
	})
	for _, k := range ckeys {
		r := b.contrib[k]
		switch {
		case !r.changed:
		case r.present:
			ms, err := json.Marshal(r.missions)
			if err != nil {
				return nil, err
			}
			pb.Queue(`INSERT INTO challenge_contributions (tenant_id, challenge_id, version_id, user_id, team_id,
					occurred_at, points, missions)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
				ON CONFLICT (tenant_id, challenge_id, version_id) DO UPDATE SET user_id = excluded.user_id,
					team_id = excluded.team_id, occurred_at = excluded.occurred_at, points = excluded.points,
					missions = excluded.missions, arrival = nextval('challenge_arrival')`,
				b.tenant, r.challenge, r.version, r.user, nullID(r.team), r.at, r.points, ms)
		case r.stored:
			pb.Queue(`DELETE FROM challenge_contributions WHERE tenant_id = $1 AND challenge_id = $2 AND version_id = $3`,
				b.tenant, r.challenge, r.version)
		}
	}
	if pb.Len() > 0 {
		if err := tx.SendBatch(ctx, pb).Close(); err != nil {
			return nil, fmt.Errorf("write progress: %w", err)
		}
	}
	if len(b.entries) == 0 {
		return nil, outbox.Append(ctx, tx, b.messages...)
	}
	scored := map[uuid.UUID]bool{}
	for _, e := range b.entries {
		scored[e.ChallengeID] = true
	}
	for _, c := range b.challenges {
		if scored[c.ID] {
			if err := b.s.ensureBoards(ctx, tx, c); err != nil {
				return nil, err
			}
		}
	}
	rs, err := b.s.record(ctx, tx, b.tenant, b.entries)
	if err != nil {
		return nil, err
	}
	return rs, outbox.Append(ctx, tx, b.messages...)
}

func nonNil(xs []float64) []float64 {
	if xs == nil {
		return []float64{}
	}
	return xs
}

// ruleError logs a rule that could not be evaluated for a past event read
// outside the change feed (baselines, duel pairing): the event gives
// nothing through it. The feed reports those of the changes it applies.
func (s *Service) ruleError(ctx context.Context, rule string, e event.Event, err error) {
	log := s.log
	if log == nil {
		log = rallye.Logger(ctx)
	}
	log.Warn("rule not evaluated; the event is skipped by it", "tenant_id", e.TenantID, "rule", rule,
		"version_id", e.VersionID, "source", e.Source, "external_id", e.ExternalID, "type", e.Type, "error", err)
}
