package api

import (
	"context"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	rallyev1 "github.com/rallyehq/rallye/gen/rallye/v1"
	"github.com/rallyehq/rallye/internal/leaderboard"
	"github.com/rallyehq/rallye/internal/rallye"
)

// leaderboardHandler serves rallyev1connect.LeaderboardServiceHandler.
type leaderboardHandler struct {
	boards *leaderboard.Service
}

func (h *leaderboardHandler) ListBoards(ctx context.Context, req *rallyev1.ListBoardsRequest) (*rallyev1.ListBoardsResponse, error) {
	p, _ := rallye.PrincipalFrom(ctx)
	challenge, err := parseOptionalID("challenge_id", req.GetChallengeId())
	if err != nil {
		return nil, err
	}
	boards, next, err := h.boards.ListBoards(ctx, p, leaderboard.ListBoardsRequest{
		ChallengeID: challenge, Period: periodFromProto[req.GetPeriod()],
		PageSize: int(req.GetPageSize()), PageToken: req.GetPageToken(),
	})
	if err != nil {
		return nil, err
	}
	current, err := h.boards.CurrentPeriods(ctx, p)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	return &rallyev1.ListBoardsResponse{
		Boards:         mapSlice(boards, func(b leaderboard.Board) *rallyev1.Board { return boardToProto(b, now) }),
		NextPageToken:  next,
		CurrentPeriods: mapSlice(current, func(b leaderboard.Board) *rallyev1.Board { return boardToProto(b, now) }),
	}, nil
}

func (h *leaderboardHandler) GetRanking(ctx context.Context, req *rallyev1.GetRankingRequest) (*rallyev1.GetRankingResponse, error) {
	p, _ := rallye.PrincipalFrom(ctx)
	r, err := rankingRequest(req.GetBoardId(), req.GetParticipantId(), req.GetPageSize(), req.GetAround())
	if err != nil {
		return nil, err
	}
	r.PageToken = req.GetPageToken()
	ranking, err := h.boards.Ranking(ctx, p, r)
	if err != nil {
		return nil, err
	}
	return &rallyev1.GetRankingResponse{Ranking: rankingToProto(ranking, time.Now())}, nil
}

func (h *leaderboardHandler) WatchRanking(ctx context.Context, req *rallyev1.WatchRankingRequest, stream *connect.ServerStream[rallyev1.WatchRankingResponse]) error {
	p, _ := rallye.PrincipalFrom(ctx)
	r, err := rankingRequest(req.GetBoardId(), req.GetParticipantId(), req.GetPageSize(), req.GetAround())
	if err != nil {
		return err
	}
	return h.boards.Watch(ctx, p, r, func(ranking leaderboard.Ranking) error {
		return stream.Send(&rallyev1.WatchRankingResponse{Ranking: rankingToProto(ranking, time.Now())})
	})
}

func rankingRequest(board, participant string, size, around int32) (leaderboard.RankingRequest, error) {
	id, err := parseID("board_id", board)
	if err != nil {
		return leaderboard.RankingRequest{}, err
	}
	who, err := parseOptionalID("participant_id", participant)
	if err != nil {
		return leaderboard.RankingRequest{}, err
	}
	return leaderboard.RankingRequest{BoardID: id, ParticipantID: who, PageSize: int(size), Around: int(around)}, nil
}

var boardKinds = map[leaderboard.Kind]rallyev1.BoardKind{
	leaderboard.KindIndividual:  rallyev1.BoardKind_BOARD_KIND_INDIVIDUAL,
	leaderboard.KindTeamTotal:   rallyev1.BoardKind_BOARD_KIND_TEAM_TOTAL,
	leaderboard.KindTeamAverage: rallyev1.BoardKind_BOARD_KIND_TEAM_AVERAGE,
}

var periodsToProto = map[leaderboard.Period]rallyev1.Period{
	leaderboard.PeriodWeek:    rallyev1.Period_PERIOD_WEEK,
	leaderboard.PeriodMonth:   rallyev1.Period_PERIOD_MONTH,
	leaderboard.PeriodQuarter: rallyev1.Period_PERIOD_QUARTER,
	leaderboard.PeriodAllTime: rallyev1.Period_PERIOD_ALL_TIME,
}

var periodFromProto = func() map[rallyev1.Period]leaderboard.Period {
	m := map[rallyev1.Period]leaderboard.Period{}
	for k, v := range periodsToProto {
		m[v] = k
	}
	return m
}()

func boardToProto(b leaderboard.Board, now time.Time) *rallyev1.Board {
	out := &rallyev1.Board{
		Id: b.ID.String(), Kind: boardKinds[b.Kind], ChallengeId: idString(b.ChallengeID), Period: periodsToProto[b.Period],
		StartTime: timestamp(b.StartsAt), EndTime: timestamp(b.EndsAt), SharedRanks: b.SharedRanks, Final: b.Frozen(),
		TieBreakSeconds: int32(b.Tick / time.Second),
	}
	if b.Period != "" && b.EndsAt.After(now) {
		out.NextResetTime = timestamp(b.EndsAt)
	}
	return out
}

func rankingToProto(r leaderboard.Ranking, now time.Time) *rallyev1.Ranking {
	n := len(r.Entries)
	if r.Me != nil {
		n += 1 + len(r.Me.Above) + len(r.Me.Below)
	}
	es := newEntryBlock(n)
	out := &rallyev1.Ranking{
		Board: boardToProto(r.Board, now), ParticipantCount: r.Participants,
		Entries: es.convert(r.Entries), NextPageToken: r.NextPageToken,
	}
	if r.Me != nil {
		out.Placement = &rallyev1.Placement{
			Entry: es.entry(r.Me.Standing),
			Above: es.convert(r.Me.Above), Below: es.convert(r.Me.Below),
			NextRank: r.Me.NextRank, PointsToNextRank: r.Me.PointsToNextRank,
		}
	}
	return out
}

// entryBlock allocates a ranking's entries and their times in one block each
// rather than two allocations per entry: a ranking read is the API's
// hottest path, and its garbage collection cost showed in profiles.
type entryBlock struct {
	entries []rallyev1.RankingEntry
	times   []timestamppb.Timestamp
}

func newEntryBlock(n int) *entryBlock {
	return &entryBlock{entries: make([]rallyev1.RankingEntry, 0, n), times: make([]timestamppb.Timestamp, 0, n)}
}

func (b *entryBlock) convert(ss []leaderboard.Standing) []*rallyev1.RankingEntry {
	out := make([]*rallyev1.RankingEntry, len(ss))
	for i, s := range ss {
		out[i] = b.entry(s)
	}
	return out
}

func (b *entryBlock) entry(s leaderboard.Standing) *rallyev1.RankingEntry {
	e := take(&b.entries)
	e.ParticipantId, e.DisplayName, e.Rank, e.Position = s.ParticipantID.String(), s.DisplayName, s.Rank, s.Position
	e.Points, e.MemberCount, e.AveragePoints = s.Points, int32(s.Members), s.AveragePoints
	if !s.ReachedAt.IsZero() {
		e.ReachTime = take(&b.times)
		e.ReachTime.Seconds, e.ReachTime.Nanos = s.ReachedAt.Unix(), int32(s.ReachedAt.Nanosecond())
	}
	return e
}

// take returns the next element of a block allocated with its final
// capacity, or a new one past it (growing the block would move the
// elements already handed out).
func take[T any](block *[]T) *T {
	if len(*block) == cap(*block) {
		return new(T)
	}
	*block = (*block)[:len(*block)+1]
	return &(*block)[len(*block)-1]
}
