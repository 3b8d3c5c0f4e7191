package leaderboard

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/rallyehq/rallye/internal/org"
	"github.com/rallyehq/rallye/internal/postgres"
	"github.com/rallyehq/rallye/internal/rallye"
)

// Standing is a participant's place on a board.
type Standing struct {
	// ParticipantID is a person, or a team on team boards.
	ParticipantID uuid.UUID
	DisplayName   string
	// Rank is the board's rank: equal to Position, or shared by equal
	// scores on boards with shared ranks.
	Rank int64
	// Position is the 1-based place in the order of the board (distinct).
	Position int64
	// Points is the total (a team's: the sum of its members').
	Points int64
	// Members and AveragePoints are set on team boards.
	Members       int
	AveragePoints float64
	// ReachedAt is when the score was reached, to the board's tie-break
	// resolution; zero for a participant who never scored.
	ReachedAt time.Time
}

// Placement is one participant's standing with its surroundings.
type Placement struct {
	Standing
	// Above and Below are the neighbours, nearest last and first.
	Above []Standing
	Below []Standing
	// NextRank is the rank the participant would reach by gaining
	// PointsToNextRank points; zero for the leader.
	NextRank         int64
	PointsToNextRank int64
}

// Ranking is a page of a board.
type Ranking struct {
	Board Board
	// Participants is the number of participants ranked ("rank X of N").
	Participants  int64
	Entries       []Standing
	NextPageToken string
	// Me is the requested participant's placement, nil when they are not on
	// the board.
	Me *Placement
}

// RankingRequest selects what to read of a board.
type RankingRequest struct {
	BoardID uuid.UUID
	// PageSize is the number of entries (0: DefaultPageSize).
	PageSize  int
	PageToken string
	// ParticipantID is whose placement to return; uuid.Nil means the caller
	// (or the caller's team on a team board).
	ParticipantID uuid.UUID
	// Around is the number of neighbours above and below the participant.
	Around int
}

// Limits of reads.
const (
	DefaultPageSize = 10
	MaxPageSize     = 100
	MaxAround       = 25
)

// Ranking reads a page of a board and a participant's placement, from Redis
// (one round trip) or, for a frozen board, from PostgreSQL.
//
// Errors: CodeNotFound when the board does not exist in the caller's
// company; CodePermissionDenied when the caller may not see it;
// CodeInvalid for a bad page token; CodeUnavailable while a board missing
// from Redis is being rebuilt.
func (s *Service) Ranking(ctx context.Context, p rallye.Principal, req RankingRequest) (Ranking, error) {
	b, self, err := s.open(ctx, p, req.BoardID)
	if err != nil {
		return Ranking{}, err
	}
	return s.read(ctx, b, self, req)
}

// open finds a board the caller may see, and the caller's participant id on
// it.
func (s *Service) open(ctx context.Context, p rallye.Principal, id uuid.UUID) (Board, uuid.UUID, error) {
	b, err := s.board(ctx, p.TenantID, id)
	if err != nil {
		return Board{}, uuid.Nil, err
	}
	self, err := s.access(ctx, p, b)
	return b, self, err
}

func (s *Service) read(ctx context.Context, b Board, self uuid.UUID, req RankingRequest) (Ranking, error) {
	size := req.PageSize
	switch {
	case size <= 0:
		size = DefaultPageSize
	case size > MaxPageSize:
		size = MaxPageSize
	}
	around := min(max(req.Around, 0), MaxAround)
	offset, err := decodeRankToken(b.ID, req.PageToken)
	if err != nil {
		return Ranking{}, err
	}
	who := req.ParticipantID
	if who == uuid.Nil {
		who = self
	}
	var r Ranking
	switch {
	case b.virtual:
		r = Ranking{Board: b}
	case b.Frozen():
		r, err = s.readFrozen(ctx, b, offset, size, who, around)
	default:
		r, err = s.readLive(ctx, b, offset, size, who, around)
		if errors.Is(err, errFrozen) {
			s.forgetBoard(b.TenantID, b.ID)
			if b, err = s.board(ctx, b.TenantID, b.ID); err == nil {
				r, err = s.readFrozen(ctx, b, offset, size, who, around)
			}
		}
	}
	if err != nil {
		return Ranking{}, err
	}
	if err := s.decorate(ctx, &r); err != nil {
		return Ranking{}, err
	}
	if int64(offset+size) < r.Participants && len(r.Entries) == size {
		r.NextPageToken = encodeRankToken(b.ID, offset+size)
	}
	return r, nil
}

// readLive reads a board from Redis, rebuilding it first when it is missing.
func (s *Service) readLive(ctx context.Context, b Board, offset, size int, who uuid.UUID, around int) (Ranking, error) {
	k := keysOf(s.keys, b.ID)
	me := ""
	if who != uuid.Nil {
		me = string(who[:])
	}
	call := scriptCall{script: readView, keys: []string{k.ready, k.z},
		args: []any{offset, size, me, around, tieRange, flag(b.SharedRanks)}}
	for attempt := 0; ; attempt++ {
		res, err := eval(ctx, s.reads, call)
		if err != nil {
			return Ranking{}, fmt.Errorf("read ranking: %w", err)
		}
		v, _ := res.([]any)
		if len(v) == 11 {
			return parseView(b, v, offset, who)
		}
		if attempt > 0 {
			return Ranking{}, unavailable()
		}
		if err := s.ensureLive(ctx, b); err != nil {
			return Ranking{}, err
		}
	}
}

// parseView turns readView's reply into a ranking.
func parseView(b Board, v []any, offset int, who uuid.UUID) (Ranking, error) {
	r := Ranking{Board: b, Participants: asInt(v[0])}
	var err error
	if r.Entries, err = b.standings(asSlice(v[1]), int64(offset), asInt(v[2])); err != nil {
		return r, err
	}
	rank := asInt(v[3])
	if rank < 0 {
		return r, nil
	}
	score, err := parseScore(v[4])
	if err != nil {
		return r, err
	}
	neighbours, err := b.standings(asSlice(v[6]), asInt(v[5]), asInt(v[7]))
	if err != nil {
		return r, err
	}
	// The neighbours are in board order around the participant: the ones
	// above and below are the two ends of that slice, shared rather than
	// copied (the read path allocates per request).
	me := &Placement{}
	above := 0
	for above < len(neighbours) && neighbours[above].Position < rank+1 {
		above++
	}
	below := above
	for below < len(neighbours) && neighbours[below].Position == rank+1 {
		below++
	}
	if above > 0 {
		me.Above = neighbours[:above:above]
	}
	if below < len(neighbours) {
		me.Below = neighbours[below:]
	}
	value, reached := decompose(score, b.StartsAt, b.Tick)
	me.Standing = b.standing(value, reached, rank+1, rank+1)
	me.ParticipantID = who
	if b.SharedRanks {
		me.Rank = asInt(v[10]) + 1
	}
	if s, ok := v[8].(string); ok && s != "" {
		next, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return r, fmt.Errorf("parse score %q: %w", s, err)
		}
		nv, _ := decompose(next, b.StartsAt, b.Tick)
		me.NextRank, me.PointsToNextRank = rank, b.gap(value, nv)
		if b.SharedRanks {
			me.NextRank = asInt(v[9]) + 1
		}
	}
	r.Me = me
	return r, nil
}

// standings decodes a WITHSCORES reply starting at 0-based position start;
// above is the number of participants with more points than the first (for
// shared ranks).
func (b Board) standings(pairs []any, start, above int64) ([]Standing, error) {
	out := make([]Standing, 0, len(pairs)/2)
	var prev int64
	for i := 0; i+1 < len(pairs); i += 2 {
		id, ok := memberID(pairs[i])
		if !ok {
			return nil, errorf("bad member in board %s", b.ID)
		}
		score, err := parseScore(pairs[i+1])
		if err != nil {
			return nil, err
		}
		value, reached := decompose(score, b.StartsAt, b.Tick)
		pos := start + int64(i/2) + 1
		rank := pos
		if b.SharedRanks {
			switch {
			case i == 0:
				rank = above + 1
			case value == prev:
				rank = out[len(out)-1].Rank
			}
		}
		st := b.standing(value, reached, pos, rank)
		st.ParticipantID = id
		out = append(out, st)
		prev = value
	}
	return out, nil
}

// standing builds a standing from a board's metric value.
func (b Board) standing(value int64, reached time.Time, pos, rank int64) Standing {
	st := Standing{Position: pos, Rank: rank, ReachedAt: reached, Points: value}
	if b.Kind == KindTeamAverage {
		st.Points = 0 // filled from PostgreSQL with the members (decorate)
		st.AveragePoints = float64(value) / 100
	}
	return st
}

// gap is the metric a participant at value must gain to reach the next
// rank, whose value is next: on distinct ranks they must beat it (they
// would reach it later), on shared ranks equal it. On average boards the
// result is in hundredths of an average point (decorate converts it).
func (b Board) gap(value, next int64) int64 {
	if b.SharedRanks {
		return next - value
	}
	return next + 1 - value
}

func parseScore(v any) (float64, error) {
	s, _ := v.(string)
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, fmt.Errorf("parse score %q: %w", s, err)
	}
	return f, nil
}

func asInt(v any) int64 {
	n, _ := v.(int64)
	return n
}

func asSlice(v any) []any {
	s, _ := v.([]any)
	return s
}

// readFrozen reads a frozen board's final ranking from PostgreSQL.
func (s *Service) readFrozen(ctx context.Context, b Board, offset, size int, who uuid.UUID, around int) (Ranking, error) {
	r := Ranking{Board: b, Participants: b.ParticipantCount}
	const cols = `member_id, points, reached_at, members, version, final_position, final_rank`
	scan := func(row pgx.CollectableRow) (Standing, error) {
		var sr scoreRow
		var reached *time.Time
		var members, pos, rank int32
		err := row.Scan(&sr.Member, &sr.Points, &reached, &members, &sr.Version, &pos, &rank)
		if reached != nil {
			sr.ReachedAt = *reached
		}
		sr.Members = int(members)
		return b.finalStanding(sr, int64(pos), int64(rank)), err
	}
	err := s.db.ReadTenant(ctx, b.TenantID, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT `+cols+` FROM board_scores WHERE tenant_id = $1 AND board_id = $2
			AND final_position > $3 ORDER BY final_position LIMIT $4`, b.TenantID, b.ID, offset, size)
		if err != nil {
			return err
		}
		if r.Entries, err = pgx.CollectRows(rows, scan); err != nil {
			return err
		}
		if who == uuid.Nil {
			return nil
		}
		rows, err = tx.Query(ctx, `SELECT `+cols+` FROM board_scores WHERE tenant_id = $1 AND board_id = $2
			AND member_id = $3 AND final_position IS NOT NULL`, b.TenantID, b.ID, who)
		if err != nil {
			return err
		}
		mine, err := pgx.CollectRows(rows, scan)
		if err != nil || len(mine) == 0 {
			return err
		}
		me := &Placement{Standing: mine[0]}
		rows, err = tx.Query(ctx, `SELECT `+cols+` FROM board_scores WHERE tenant_id = $1 AND board_id = $2
			AND final_position BETWEEN $3 AND $4 ORDER BY final_position`,
			b.TenantID, b.ID, me.Position-int64(around), me.Position+int64(around))
		if err != nil {
			return err
		}
		near, err := pgx.CollectRows(rows, scan)
		if err != nil {
			return err
		}
		for _, n := range near {
			switch {
			case n.Position < me.Position:
				me.Above = append(me.Above, n)
			case n.Position > me.Position:
				me.Below = append(me.Below, n)
			}
		}
		if me.Rank > 1 {
			// The next better rank: the participant just above, or on shared
			// ranks the last of the group above.
			rows, err = tx.Query(ctx, `SELECT `+cols+` FROM board_scores WHERE tenant_id = $1 AND board_id = $2
				AND final_rank < $3 ORDER BY final_position DESC LIMIT 1`, b.TenantID, b.ID, me.Rank)
			if err != nil {
				return err
			}
			next, err := pgx.CollectRows(rows, scan)
			if err != nil {
				return err
			}
			if len(next) == 1 {
				me.NextRank = next[0].Rank
				me.PointsToNextRank = b.gap(b.standingValue(me.Standing), b.standingValue(next[0]))
			}
		}
		r.Me = me
		return nil
	})
	return r, err
}

// finalStanding is a standing read from PostgreSQL.
func (b Board) finalStanding(sr scoreRow, pos, rank int64) Standing {
	st := Standing{ParticipantID: sr.Member, Position: pos, Rank: rank, Points: sr.Points, ReachedAt: sr.ReachedAt}
	if b.Team() {
		st.Members = sr.Members
		st.AveragePoints = float64(average(sr.Points, sr.Members)) / 100
	}
	if !sr.ReachedAt.IsZero() {
		// Shown to the tie-break resolution, as live boards show it.
		_, st.ReachedAt = decompose(b.score(sr), b.StartsAt, b.Tick)
	}
	return st
}

// standingValue is the metric of a standing (points, or hundredths of an
// average point).
func (b Board) standingValue(st Standing) int64 {
	if b.Kind == KindTeamAverage {
		return average(st.Points, st.Members)
	}
	return st.Points
}

// decorate adds display names, and on team boards the teams' totals and
// members, which live in PostgreSQL. On average boards it turns the gap to
// the next rank into team points.
func (s *Service) decorate(ctx context.Context, r *Ranking) error {
	n := len(r.Entries)
	if r.Me != nil {
		n += 1 + len(r.Me.Above) + len(r.Me.Below)
	}
	all := make([]*Standing, 0, n)
	for i := range r.Entries {
		all = append(all, &r.Entries[i])
	}
	if r.Me != nil {
		all = append(all, &r.Me.Standing)
		for i := range r.Me.Above {
			all = append(all, &r.Me.Above[i])
		}
		for i := range r.Me.Below {
			all = append(all, &r.Me.Below[i])
		}
	}
	if len(all) == 0 {
		return nil
	}
	if err := s.name(ctx, r.Board.TenantID, all); err != nil {
		return err
	}
	if r.Board.Team() && !r.Board.Frozen() {
		if err := s.teamTotals(ctx, r.Board, all); err != nil {
			return err
		}
	}
	if r.Me != nil && r.Me.NextRank > 0 && r.Board.Kind == KindTeamAverage {
		// Hundredths of an average to team points: the smallest total whose
		// average reaches the target.
		m := int64(max(r.Me.Members, 1))
		target := average(r.Me.Points, r.Me.Members) + r.Me.PointsToNextRank
		r.Me.PointsToNextRank = ceilDiv(target*m, 100) - r.Me.Points
	}
	return nil
}

// teamTotals fills the totals and members of teams on a live team board.
func (s *Service) teamTotals(ctx context.Context, b Board, all []*Standing) error {
	ids := make([]uuid.UUID, len(all))
	for i, st := range all {
		ids[i] = st.ParticipantID
	}
	type team struct {
		points  int64
		members int
	}
	teams := map[uuid.UUID]team{}
	err := s.db.ReadTenant(ctx, b.TenantID, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT member_id, points, members FROM board_scores
			WHERE tenant_id = $1 AND board_id = $2 AND member_id = ANY($3)`, b.TenantID, b.ID, ids)
		if err != nil {
			return err
		}
		var id uuid.UUID
		var t team
		var members int32
		_, err = pgx.ForEachRow(rows, []any{&id, &t.points, &members}, func() error {
			t.members = int(members)
			teams[id] = t
			return nil
		})
		return err
	})
	if err != nil {
		return fmt.Errorf("read teams: %w", err)
	}
	for _, st := range all {
		t := teams[st.ParticipantID]
		st.Members = t.members
		st.Points = t.points
		if b.Kind == KindTeamTotal {
			st.AveragePoints = float64(average(t.points, t.members)) / 100
		}
	}
	return nil
}

// name fills the display names of people and teams (cached).
func (s *Service) name(ctx context.Context, tenantID uuid.UUID, all []*Standing) error {
	var missing []uuid.UUID
	now := s.nameCache.now()
	for _, st := range all {
		if n, ok := s.nameCache.getAt(boardKey{tenantID, st.ParticipantID}, now); ok {
			st.DisplayName = n
		} else if !slices.Contains(missing, st.ParticipantID) {
			missing = append(missing, st.ParticipantID)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	found := make(map[uuid.UUID]string, len(missing))
	err := s.db.ReadTenant(ctx, tenantID, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT id, display_name FROM users WHERE tenant_id = $1 AND id = ANY($2)
			UNION ALL SELECT id, name FROM teams WHERE tenant_id = $1 AND id = ANY($2)`, tenantID, missing)
		if err != nil {
			return err
		}
		var id uuid.UUID
		var name string
		_, err = pgx.ForEachRow(rows, []any{&id, &name}, func() error {
			found[id] = name
			s.nameCache.Add(boardKey{tenantID, id}, name)
			return nil
		})
		return err
	})
	if err != nil {
		return fmt.Errorf("read names: %w", err)
	}
	for _, st := range all {
		if n, ok := found[st.ParticipantID]; ok {
			st.DisplayName = n
		}
	}
	return nil
}

// Access. Admins, HR and integrations see every board of their company; a
// person sees the period boards, the boards of challenges they take part
// in, and (managers) those with participants from their teams or sub-teams.

type access struct {
	allowed bool
	self    uuid.UUID
}

type accessKey struct {
	tenant, user, key, board uuid.UUID
	roles                    uint8
}

// roleBits packs roles for a cache key.
func roleBits(roles []rallye.Role) uint8 {
	var b uint8
	for _, r := range roles {
		for i, known := range []rallye.Role{rallye.RoleRep, rallye.RoleManager, rallye.RoleHR, rallye.RoleAdmin, rallye.RoleIntegration} {
			if r == known {
				b |= 1 << i
			}
		}
	}
	return b
}

var seeAll = []rallye.Role{rallye.RoleAdmin, rallye.RoleHR, rallye.RoleIntegration}

// access returns the caller's participant id on the board (uuid.Nil when
// not a participant), or CodePermissionDenied.
func (s *Service) access(ctx context.Context, p rallye.Principal, b Board) (uuid.UUID, error) {
	key := accessKey{tenant: p.TenantID, user: p.UserID, key: p.APIKeyID, board: b.ID, roles: roleBits(p.Roles)}
	a, ok := s.accessCache.Get(key)
	if !ok {
		var err error
		if a, err = s.computeAccess(ctx, p, b); err != nil {
			return uuid.Nil, err
		}
		s.accessCache.Add(key, a)
	}
	if !a.allowed {
		return uuid.Nil, &rallye.Error{Code: rallye.CodePermissionDenied, Message: "you do not take part in this challenge"}
	}
	return a.self, nil
}

func (s *Service) computeAccess(ctx context.Context, p rallye.Principal, b Board) (access, error) {
	a := access{allowed: p.Has(seeAll...)}
	if b.ChallengeID == uuid.Nil {
		if p.IsPerson() {
			a.allowed, a.self = true, p.UserID
		}
		return a, nil
	}
	if !p.IsPerson() {
		return a, nil
	}
	err := s.db.ReadTenant(ctx, p.TenantID, func(tx pgx.Tx) error {
		var team *uuid.UUID
		err := tx.QueryRow(ctx, `SELECT team_id FROM challenge_participants WHERE tenant_id = $1 AND challenge_id = $2 AND user_id = $3`,
			p.TenantID, b.ChallengeID, p.UserID).Scan(&team)
		switch {
		case err == nil:
			a.allowed = true
			a.self = p.UserID
			if b.Team() {
				a.self = uuid.Nil
				if team != nil {
					a.self = *team
				}
			}
		case !postgres.IsNoRows(err):
			return err
		}
		if a.allowed || !p.Has(rallye.RoleManager) {
			return nil
		}
		teams, err := managedTeams(ctx, tx, p)
		if err != nil || len(teams) == 0 {
			return err
		}
		return tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM team_members m JOIN challenge_participants cp
				ON cp.tenant_id = m.tenant_id AND cp.challenge_id = $2 AND cp.user_id = m.user_id
			WHERE m.tenant_id = $1 AND m.team_id = ANY($3))`, p.TenantID, b.ChallengeID, teams).Scan(&a.allowed)
	})
	if err != nil {
		return a, fmt.Errorf("check board access: %w", err)
	}
	return a, nil
}

// managedTeams returns the teams a manager belongs to and their sub-teams.
func managedTeams(ctx context.Context, tx pgx.Tx, p rallye.Principal) ([]uuid.UUID, error) {
	rows, err := tx.Query(ctx, `SELECT team_id FROM team_members WHERE tenant_id = $1 AND user_id = $2`, p.TenantID, p.UserID)
	if err != nil {
		return nil, err
	}
	roots, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
	if err != nil || len(roots) == 0 {
		return nil, err
	}
	return org.TeamAndDescendants(ctx, tx, p.TenantID, roots)
}

// ListBoardsRequest selects boards to list.
type ListBoardsRequest struct {
	// ChallengeID keeps one challenge's boards; Period keeps one period's.
	ChallengeID uuid.UUID
	Period      Period
	PageSize    int
	PageToken   string
}

// ListBoards lists the boards the caller may see, newest first (by start),
// past periods included.
//
// Errors: CodeInvalid for a bad page token.
func (s *Service) ListBoards(ctx context.Context, p rallye.Principal, req ListBoardsRequest) ([]Board, string, error) {
	size := req.PageSize
	switch {
	case size <= 0:
		size = 50
	case size > MaxPageSize:
		size = MaxPageSize
	}
	after, afterID, err := decodeListToken(req.PageToken)
	if err != nil {
		return nil, "", err
	}
	var out []Board
	err = s.db.ReadTenant(ctx, p.TenantID, func(tx pgx.Tx) error {
		var teams []uuid.UUID
		if p.Has(rallye.RoleManager) && !p.Has(seeAll...) {
			var err error
			if teams, err = managedTeams(ctx, tx, p); err != nil {
				return err
			}
		}
		if teams == nil {
			teams = []uuid.UUID{}
		}
		var err error
		out, err = collectBoards(tx.Query(ctx, `SELECT `+boardColumns+` FROM boards b
			WHERE tenant_id = $1
			  AND ($2 = '00000000-0000-0000-0000-000000000000'::uuid OR challenge_id = $2)
			  AND ($3 = '' OR period = $3)
			  AND ($4::timestamptz IS NULL OR (starts_at, id) < ($4, $5))
			  AND ($6 OR (period IS NOT NULL AND $7)
			       OR challenge_id IN (SELECT challenge_id FROM challenge_participants WHERE tenant_id = $1 AND user_id = $8)
			       OR challenge_id IN (SELECT cp.challenge_id FROM team_members m JOIN challenge_participants cp
			             ON cp.tenant_id = m.tenant_id AND cp.user_id = m.user_id
			           WHERE m.tenant_id = $1 AND m.team_id = ANY($9)))
			ORDER BY starts_at DESC, id DESC LIMIT $10`,
			p.TenantID, req.ChallengeID, string(req.Period), after, afterID,
			p.Has(seeAll...), p.IsPerson(), p.UserID, teams, size))
		return err
	})
	if err != nil {
		return nil, "", fmt.Errorf("list boards: %w", err)
	}
	next := ""
	if len(out) == size {
		last := out[len(out)-1]
		next = encodeListToken(last.StartsAt, last.ID)
	}
	return out, next, nil
}

// Page tokens are opaque to clients. A ranking's names the board and an
// offset (rankings move, so a page is a range of places, not of people); a
// board list's names the last board listed.

func encodeRankToken(board uuid.UUID, offset int) string {
	b := binary.AppendUvarint(append([]byte{1}, board[:]...), uint64(offset))
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeRankToken(board uuid.UUID, token string) (int, error) {
	if token == "" {
		return 0, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || len(b) < 18 || b[0] != 1 || [16]byte(b[1:17]) != board {
		return 0, rallye.Invalid("page_token", "is not a token returned for this board")
	}
	off, n := binary.Uvarint(b[17:])
	if n <= 0 || off > 1<<31 {
		return 0, rallye.Invalid("page_token", "is not a token returned for this board")
	}
	return int(off), nil
}

func encodeListToken(start time.Time, id uuid.UUID) string {
	b := binary.BigEndian.AppendUint64([]byte{2}, uint64(start.UnixMicro()))
	return base64.RawURLEncoding.EncodeToString(append(b, id[:]...))
}

func decodeListToken(token string) (*time.Time, uuid.UUID, error) {
	if token == "" {
		return nil, uuid.Nil, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || len(b) != 25 || b[0] != 2 {
		return nil, uuid.Nil, rallye.Invalid("page_token", "is not a token returned by this list")
	}
	t := time.UnixMicro(int64(binary.BigEndian.Uint64(b[1:9])))
	return &t, uuid.UUID(b[9:25]), nil
}
