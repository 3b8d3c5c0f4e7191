package challenge

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/rallyehq/rallye/internal/org"
	"github.com/rallyehq/rallye/internal/page"
	"github.com/rallyehq/rallye/internal/rallye"
)

// MissionView is a mission's progress for one subject, as a person reads
// it: numbers, and what is still missing in the reader's language.
type MissionView struct {
	MissionID uuid.UUID
	Key       string
	Scope     MissionScope
	// SubjectID is the person, or their team for team missions.
	SubjectID uuid.UUID
	Unit      Unit
	Current   float64
	Target    float64
	Percent   int
	// Missing is what is still missing ("2 more meetings"), "" when done.
	Missing     string
	Completed   bool
	CompletedAt time.Time
	// Locked: in a sequential challenge, the previous mission is not done.
	Locked bool
	// Volume counts the events counted; MinVolume is what rates need.
	Volume, MinVolume int64
	Points            int64
	// Submission is the latest submission's state (manual missions).
	Submission string
}

// Participation is a person's place in a challenge.
type Participation struct {
	UserID, TeamID uuid.UUID
	// Enrolled is false for someone who may join (or will be enrolled at
	// their first event) but is not yet.
	Enrolled   bool
	CountsFrom time.Time
	Points     int64
	// Rank is final once the challenge is final, provisional before.
	Rank        int
	Provisional bool
	Target      int64
	Percent     float64
	Reached     time.Time
	Duel        *Duel
	Missions    []MissionView
	// Rewards granted once final, and Result saying the place and rewards
	// in the reader's language ("2nd: +300 points and the 'Podium'
	// badge"); Tied when others share the rank.
	Rewards []GrantedReward
	Tied    bool
	Result  string
}

// Detail is a challenge as one person sees it.
type Detail struct {
	Challenge    *Challenge
	Me           *Participation
	Completeness *Completeness
	CanManage    bool
	CanJoin      bool
	Participants int
}

// reader is who reads: their language and the company's currency.
type reader struct {
	locale, currency string
}

func readerOf(ctx context.Context, tx pgx.Tx, p rallye.Principal) (reader, error) {
	var r reader
	err := tx.QueryRow(ctx, `SELECT coalesce((SELECT locale FROM users WHERE tenant_id = $1 AND id = $2), t.default_locale),
		t.currency FROM tenants t WHERE t.id = $1`, p.TenantID, p.UserID).Scan(&r.locale, &r.currency)
	if err != nil {
		return r, fmt.Errorf("read locale: %w", err)
	}
	return r, nil
}

// Get returns a challenge with the caller's participation and progress.
// CodeNotFound when the caller may not see it.
func (s *Service) Get(ctx context.Context, p rallye.Principal, id uuid.UUID) (*Detail, error) {
	var d *Detail
	err := s.db.ReadTenant(ctx, p.TenantID, func(tx pgx.Tx) error {
		v := &viewer{p: p}
		c, r, err := v.visible(ctx, tx, id, noLock)
		if err != nil {
			return err
		}
		c.State = c.StateAt(s.now())
		rd, err := readerOf(ctx, tx, p)
		if err != nil {
			return err
		}
		d = &Detail{Challenge: c, CanManage: r.manage}
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM challenge_enrollments WHERE tenant_id = $1 AND challenge_id = $2`,
			p.TenantID, c.ID).Scan(&d.Participants); err != nil {
			return fmt.Errorf("count participants: %w", err)
		}
		if c.State == StateEnded || c.Final() {
			comp, err := completeness(ctx, tx, c)
			if err != nil {
				return err
			}
			d.Completeness = &comp
		}
		if !p.IsPerson() || c.State == StateDraft {
			return nil
		}
		st, err := s.standings(ctx, tx, c)
		if err != nil {
			return err
		}
		d.Me, err = s.participation(ctx, tx, c, st, p.UserID, rd)
		if err != nil {
			return err
		}
		d.CanJoin = d.Me != nil && !d.Me.Enrolled && (c.State == StateScheduled || c.State == StateActive)
		return nil
	})
	return d, err
}

// participation builds a person's view, or nil when they neither take part
// nor may.
func (s *Service) participation(ctx context.Context, tx pgx.Tx, c *Challenge, st *Standings, user uuid.UUID, rd reader) (*Participation, error) {
	es, err := enrollments(ctx, tx, c.TenantID, []uuid.UUID{c.ID}, []uuid.UUID{user}, false)
	if err != nil {
		return nil, err
	}
	var me *Participation
	if len(es) == 1 {
		e := es[0]
		me = &Participation{UserID: user, TeamID: e.TeamID, Enrolled: true, CountsFrom: e.CountsFrom, Points: e.Points,
			Provisional: !c.Final(), Target: e.Target}
		if row, ok := st.person(user); ok {
			me.Rank, me.Percent, me.Reached = row.Rank, row.Percent, row.Reached
		}
		if c.Final() && e.FinalRank > 0 {
			me.Rank = e.FinalRank
		}
		me.Tied = st.tied(me.Rank)
		if c.Final() {
			gs, err := grantsOf(ctx, tx, c, []uuid.UUID{user})
			if err != nil {
				return nil, err
			}
			me.Rewards = gs[user]
			me.Result = ResultText(me.Rank, me.Tied, me.Rewards, rd.locale)
		}
		for i := range st.Duels {
			if d := st.Duels[i]; d.A == user || d.B == user {
				me.Duel = &d
			}
		}
	} else {
		o, err := loadOrg(ctx, tx, c.TenantID, []uuid.UUID{user})
		if err != nil {
			return nil, err
		}
		pl := o.place(c, user)
		if !pl.eligible {
			return nil, nil
		}
		me = &Participation{UserID: user, TeamID: pl.team, CountsFrom: later(c.StartsAt, c.memberSince(pl.since)), Provisional: true}
		if c.Definition.Enrollment == EnrollOptIn || c.State != StateScheduled && c.State != StateActive {
			me.CountsFrom = time.Time{}
		}
	}
	views, err := s.missionViews(ctx, tx, c, []uuid.UUID{user}, map[uuid.UUID]uuid.UUID{user: me.TeamID}, rd)
	if err != nil {
		return nil, err
	}
	me.Missions = views[user]
	return me, nil
}

// missionViews builds the mission progress of people (with their teams).
func (s *Service) missionViews(ctx context.Context, tx pgx.Tx, c *Challenge, users []uuid.UUID, teamOf map[uuid.UUID]uuid.UUID, rd reader) (map[uuid.UUID][]MissionView, error) {
	subjects := slices.Clone(users)
	for _, t := range teamOf {
		if t != uuid.Nil {
			subjects = append(subjects, t)
		}
	}
	rows, err := tx.Query(ctx, `SELECT `+progressColumns+` FROM challenge_progress
		WHERE tenant_id = $1 AND challenge_id = $2 AND subject_id = ANY($3)`, c.TenantID, c.ID, uniqueIDs(subjects))
	if err != nil {
		return nil, fmt.Errorf("read progress: %w", err)
	}
	ps, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*progress, error) { return scanProgress(r) })
	if err != nil {
		return nil, fmt.Errorf("read progress: %w", err)
	}
	prog := map[progressKey]*progress{}
	for _, p := range ps {
		prog[progressKey{p.MissionID, p.SubjectID}] = p
	}
	rows, err = tx.Query(ctx, `SELECT DISTINCT ON (mission_id, user_id) mission_id, user_id, state FROM mission_submissions
		WHERE tenant_id = $1 AND challenge_id = $2 AND user_id = ANY($3)
		ORDER BY mission_id, user_id, submitted_at DESC`, c.TenantID, c.ID, users)
	if err != nil {
		return nil, fmt.Errorf("read submissions: %w", err)
	}
	subs := map[progressKey]submissionState{}
	var mk progressKey
	var state string
	if _, err := pgx.ForEachRow(rows, []any{&mk.mission, &mk.subject, &state}, func() error {
		subs[mk] = submissionState(state)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("read submissions: %w", err)
	}
	out := map[uuid.UUID][]MissionView{}
	for _, u := range users {
		var prev *MissionInfo
		for i := range c.Missions {
			m := c.Missions[i]
			subject := u
			if m.Scope == ScopeTeam {
				subject = teamOf[u]
			}
			p := prog[progressKey{m.ID, subject}]
			if p == nil {
				p = &progress{MissionID: m.ID, SubjectID: subject}
			}
			var lockedBy *Mission
			if c.Definition.Sequential && prev != nil && !prog[progressKey{prev.ID, u}].done() {
				lockedBy = &prev.Mission
			}
			cur, _ := measure(m.Mission, p)
			if m.IsManual() {
				cur = 0
				if p.Met {
					cur = 1
				}
			}
			target := p.target(m.Mission)
			if m.IsManual() {
				target = 1
			}
			out[u] = append(out[u], MissionView{
				MissionID: m.ID, Key: m.Key, Scope: m.Scope, SubjectID: subject, Unit: m.Unit,
				Current: cur, Target: target, Percent: percent(m.Mission, p),
				Missing:   missingText(m.Mission, p, subs[progressKey{m.ID, u}], lockedBy, rd.currency, rd.locale),
				Completed: p.Completed, CompletedAt: p.CompletedAt, Locked: lockedBy != nil,
				Volume: p.Volume, MinVolume: m.MinVolume, Points: m.Points, Submission: string(subs[progressKey{m.ID, u}]),
			})
			prev = &c.Missions[i]
		}
	}
	return out, nil
}

// done reports whether a (possibly absent) progress row is completed.
func (p *progress) done() bool { return p != nil && p.Completed }

// Standings returns a challenge's rankings in its format. CodeNotFound when
// the caller may not see it.
func (s *Service) Standings(ctx context.Context, p rallye.Principal, id uuid.UUID) (*Challenge, *Standings, error) {
	var c *Challenge
	var st *Standings
	err := s.db.ReadTenant(ctx, p.TenantID, func(tx pgx.Tx) error {
		v := &viewer{p: p}
		var err error
		if c, _, err = v.visible(ctx, tx, id, noLock); err != nil {
			return err
		}
		c.State = c.StateAt(s.now())
		st, err = s.standings(ctx, tx, c)
		return err
	})
	return c, st, err
}

// Window selects challenges by where they are in time.
type Window string

// Windows.
const (
	// WindowActive: running now.
	WindowActive Window = "active"
	// WindowUpcoming: scheduled, not started.
	WindowUpcoming Window = "upcoming"
	// WindowPast: ended (final or not) or cancelled.
	WindowPast Window = "past"
)

// Summary is a challenge in a person's list.
type Summary struct {
	Challenge *Challenge
	Me        *Participation
	// Next is the next instant that matters: the start, the end, or when
	// the results become final at the earliest.
	Next time.Time
}

// ListMineRequest selects a page of the caller's challenges.
type ListMineRequest struct {
	Window Window
	Size   int
	Cursor page.Cursor
}

// ListMine returns the challenges the caller takes part in or may join,
// in a window, newest first, with their points and (provisional or final)
// rank.
func (s *Service) ListMine(ctx context.Context, p rallye.Principal, req ListMineRequest) ([]Summary, error) {
	w, size, cursor := req.Window, req.Size, req.Cursor
	if !p.IsPerson() {
		return nil, failed("NOT_A_PERSON", "this call is for people, not API keys")
	}
	var out []Summary
	err := s.db.ReadTenant(ctx, p.TenantID, func(tx pgx.Tx) error {
		rd, err := readerOf(ctx, tx, p)
		if err != nil {
			return err
		}
		o, err := loadOrg(ctx, tx, p.TenantID, []uuid.UUID{p.UserID})
		if err != nil {
			return err
		}
		var mine []uuid.UUID // the caller's teams and their ancestors
		if me := o.people[p.UserID]; me != nil {
			for _, m := range me.teams {
				for t, n := m.team, 0; t != uuid.Nil && n < 64; t, n = o.parent[t], n+1 {
					mine = append(mine, t)
				}
			}
		}
		now := s.now()
		states := map[Window][]string{
			WindowActive: {"active"}, WindowUpcoming: {"scheduled"}, WindowPast: {"ended", "cancelled"},
		}[w]
		before := cursor.After
		if before == uuid.Nil {
			before = uuid.Max
		}
		// Eligibility is checked in Go (roles, team join rules): read in
		// batches until the page is full or the rows run out.
		limit := size*2 + 10
		for {
			rows, err := tx.Query(ctx, `SELECT `+challengeColumns+` FROM challenges c
				WHERE tenant_id = $1 AND `+shownStateSQL("$7")+` = ANY($2) AND id < $3
				  AND (team_ids && $4 OR $5 = ANY(user_ids) OR EXISTS (SELECT 1 FROM challenge_enrollments e
				       WHERE e.tenant_id = c.tenant_id AND e.challenge_id = c.id AND e.user_id = $5))
				ORDER BY id DESC LIMIT $6`, p.TenantID, states, before, mine, p.UserID, limit, now)
			if err != nil {
				return fmt.Errorf("list challenges: %w", err)
			}
			cs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*Challenge, error) { return scanChallenge(r) })
			if err != nil {
				return fmt.Errorf("list challenges: %w", err)
			}
			if err := loadMissions(ctx, tx, cs); err != nil {
				return err
			}
			for _, c := range cs {
				if len(out) == size {
					return nil
				}
				c.State = c.StateAt(now)
				st, err := s.standings(ctx, tx, c)
				if err != nil {
					return err
				}
				me, err := s.participation(ctx, tx, c, st, p.UserID, rd)
				if err != nil {
					return err
				}
				if me == nil || (!me.Enrolled && c.State != StateScheduled && c.State != StateActive) {
					continue
				}
				out = append(out, Summary{Challenge: c, Me: me, Next: next(c)})
			}
			if len(cs) < limit {
				return nil
			}
			before = cs[len(cs)-1].ID
		}
	})
	return out, err
}

// next is the next instant that matters for c.
func next(c *Challenge) time.Time {
	switch {
	case c.State == StateScheduled:
		return c.StartsAt
	case c.State == StateActive:
		return c.EndsAt
	case c.State == StateEnded && !c.Final():
		return c.EarliestFinal()
	}
	return time.Time{}
}

// Overview is a challenge in a manager's list, with participation counts.
type Overview struct {
	Challenge *Challenge
	// Participants are enrolled; Scoring have points or a completed
	// mission; Completions counts completed missions (people and teams).
	Participants, Scoring, Completions int
	Next                               time.Time
}

// ListRequest selects a page of challenges for managers, HR and admins.
type ListRequest struct {
	States []State // empty: all
	TeamID uuid.UUID
	Size   int
	Cursor page.Cursor
}

// List returns challenges newest first: all of the company's for HR and
// admins, those touching their teams (or created by them) for a manager.
func (s *Service) List(ctx context.Context, p rallye.Principal, req ListRequest) ([]Overview, error) {
	var out []Overview
	err := s.db.ReadTenant(ctx, p.TenantID, func(tx pgx.Tx) error {
		var teams []uuid.UUID // nil: no restriction
		if !p.Has(rallye.RoleAdmin, rallye.RoleHR) {
			var err error
			managed, err := org.ManagedTeams(ctx, tx, p.TenantID, p.UserID)
			if err != nil {
				return fmt.Errorf("managed teams: %w", err)
			}
			// Challenges of their teams, sub-teams, and of the parent
			// teams that cover them.
			o, err := loadOrg(ctx, tx, p.TenantID, nil)
			if err != nil {
				return err
			}
			teams = []uuid.UUID{}
			for _, m := range managed {
				for t, n := m, 0; t != uuid.Nil && n < 64; t, n = o.parent[t], n+1 {
					teams = append(teams, t)
				}
			}
		}
		now := s.now()
		states := make([]string, len(req.States))
		for i, st := range req.States {
			states[i] = string(st)
		}
		before := req.Cursor.After
		if before == uuid.Nil {
			before = uuid.Max
		}
		rows, err := tx.Query(ctx, `SELECT `+challengeColumns+` FROM challenges c
			WHERE tenant_id = $1 AND id < $2 AND (cardinality($3::text[]) = 0 OR `+shownStateSQL("$8")+` = ANY($3))
			  AND ($4::uuid IS NULL OR $4 = ANY(team_ids))
			  AND ($5::uuid[] IS NULL OR team_ids && $5 OR created_by = $6)
			ORDER BY id DESC LIMIT $7`, p.TenantID, before, states, nullID(req.TeamID), teams, nullID(p.UserID), req.Size, now)
		if err != nil {
			return fmt.Errorf("list challenges: %w", err)
		}
		cs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*Challenge, error) { return scanChallenge(r) })
		if err != nil {
			return fmt.Errorf("list challenges: %w", err)
		}
		if err := loadMissions(ctx, tx, cs); err != nil {
			return err
		}
		for _, c := range cs {
			c.State = c.StateAt(now)
			o := Overview{Challenge: c, Next: next(c)}
			err := tx.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE points <> 0 OR EXISTS (SELECT 1 FROM challenge_awards a
					WHERE a.tenant_id = e.tenant_id AND a.challenge_id = e.challenge_id AND a.user_id = e.user_id AND a.revoked_at IS NULL)),
				(SELECT count(*) FROM challenge_progress g WHERE g.tenant_id = $1 AND g.challenge_id = $2 AND g.completed)
				FROM challenge_enrollments e WHERE e.tenant_id = $1 AND e.challenge_id = $2`, p.TenantID, c.ID).
				Scan(&o.Participants, &o.Scoring, &o.Completions)
			if err != nil {
				return fmt.Errorf("count participation: %w", err)
			}
			out = append(out, o)
		}
		return nil
	})
	return out, err
}

// ParticipantRow is one participant's progress, for managers.
type ParticipantRow struct {
	Participation
	DisplayName string
}

// ParticipantsRequest selects a page of a challenge's participants.
type ParticipantsRequest struct {
	ChallengeID uuid.UUID
	// TeamID, when set, keeps the people playing for that team.
	TeamID uuid.UUID
	Size   int
	Cursor page.Cursor
}

// Participants returns the participants of a challenge with their mission
// progress, in user id order, one page at a time: all of them for HR, admins
// and the challenge's managers; a manager who only shares some teams sees
// the members of their teams.
func (s *Service) Participants(ctx context.Context, p rallye.Principal, req ParticipantsRequest) ([]ParticipantRow, error) {
	id, team, size, cursor := req.ChallengeID, req.TeamID, req.Size, req.Cursor
	var out []ParticipantRow
	err := s.db.ReadTenant(ctx, p.TenantID, func(tx pgx.Tx) error {
		v := &viewer{p: p}
		c, r, err := v.visible(ctx, tx, id, noLock)
		if err != nil {
			return err
		}
		var only []uuid.UUID // nil: everyone
		if !r.manage && !p.Has(rallye.RoleHR, rallye.RoleAdmin) {
			managed, err := v.managedTeams(ctx, tx)
			if err != nil {
				return err
			}
			if len(managed) == 0 {
				return rallye.Errorf(rallye.CodePermissionDenied, "only managers see their team's progress")
			}
			rows, err := tx.Query(ctx, `SELECT DISTINCT user_id FROM team_members WHERE tenant_id = $1 AND team_id = ANY($2)`,
				p.TenantID, managed)
			if err != nil {
				return err
			}
			if only, err = pgx.CollectRows(rows, pgx.RowTo[uuid.UUID]); err != nil {
				return err
			}
		}
		rd, err := readerOf(ctx, tx, p)
		if err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT `+enrollmentColumns+`, u.display_name FROM challenge_enrollments e
			JOIN users u ON u.tenant_id = e.tenant_id AND u.id = e.user_id
			WHERE e.tenant_id = $1 AND e.challenge_id = $2 AND e.user_id > $3
			  AND ($4::uuid IS NULL OR e.team_id = $4) AND ($5::uuid[] IS NULL OR e.user_id = ANY($5))
			ORDER BY e.user_id LIMIT $6`, p.TenantID, c.ID, cursor.After, nullID(team), only, size)
		if err != nil {
			return fmt.Errorf("list participants: %w", err)
		}
		var es []*enrollment
		names := map[uuid.UUID]string{}
		for rows.Next() {
			e := &enrollment{}
			var name string
			if err := rows.Scan(&e.ChallengeID, &e.UserID, &e.TeamID, &e.Via, &e.EnrolledAt, &e.CountsFrom, &e.Target,
				&e.Points, &e.OpponentID, &e.Bye, &e.FinalRank, &e.FinalPoints, &name); err != nil {
				rows.Close()
				return err
			}
			es = append(es, e)
			names[e.UserID] = name
		}
		if err := rows.Err(); err != nil {
			return err
		}
		st, err := s.standings(ctx, tx, c)
		if err != nil {
			return err
		}
		users := make([]uuid.UUID, len(es))
		teamOf := map[uuid.UUID]uuid.UUID{}
		for i, e := range es {
			users[i], teamOf[e.UserID] = e.UserID, e.TeamID
		}
		views, err := s.missionViews(ctx, tx, c, users, teamOf, rd)
		if err != nil {
			return err
		}
		var grants map[uuid.UUID][]GrantedReward
		if c.Final() {
			if grants, err = grantsOf(ctx, tx, c, users); err != nil {
				return err
			}
		}
		for _, e := range es {
			row := ParticipantRow{DisplayName: names[e.UserID], Participation: Participation{
				UserID: e.UserID, TeamID: e.TeamID, Enrolled: true, CountsFrom: e.CountsFrom, Points: e.Points,
				Provisional: !c.Final(), Target: e.Target, Missions: views[e.UserID],
			}}
			if sr, ok := st.person(e.UserID); ok {
				row.Rank, row.Percent, row.Reached = sr.Rank, sr.Percent, sr.Reached
			}
			if c.Final() {
				row.Tied, row.Rewards = st.tied(row.Rank), grants[e.UserID]
				row.Result = ResultText(row.Rank, row.Tied, row.Rewards, rd.locale)
			}
			out = append(out, row)
		}
		return nil
	})
	return out, err
}

// grantsOf reads the rewards granted to people in a final challenge.
func grantsOf(ctx context.Context, tx pgx.Tx, c *Challenge, users []uuid.UUID) (map[uuid.UUID][]GrantedReward, error) {
	rows, err := tx.Query(ctx, `SELECT user_id, key, kind, coalesce(rank, 0), bonus_points, badge, label_fr, label_en
		FROM challenge_reward_grants WHERE tenant_id = $1 AND challenge_id = $2 AND user_id = ANY($3)
		ORDER BY user_id, coalesce(rank, 0) = 0, key`, c.TenantID, c.ID, users)
	if err != nil {
		return nil, fmt.Errorf("read rewards: %w", err)
	}
	out := map[uuid.UUID][]GrantedReward{}
	var user uuid.UUID
	var g GrantedReward
	_, err = pgx.ForEachRow(rows, []any{&user, &g.Key, &g.Kind, &g.Rank, &g.Points, &g.Badge, &g.Label.FR, &g.Label.EN}, func() error {
		out[user] = append(out[user], g)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read rewards: %w", err)
	}
	return out, nil
}
