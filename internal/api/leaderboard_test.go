package api_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	rallyev1 "github.com/rallyehq/rallye/gen/rallye/v1"
	"github.com/rallyehq/rallye/gen/rallye/v1/rallyev1connect"
	"github.com/rallyehq/rallye/internal/leaderboard"
	"github.com/rallyehq/rallye/internal/org"
	"github.com/rallyehq/rallye/internal/rallye"
	"github.com/rallyehq/rallye/internal/testutil/testserver"
)

func boardClient(srv *testserver.Server, p testserver.Protocol, token string) rallyev1connect.LeaderboardServiceClient {
	opts := append([]connect.ClientOption{}, p.Opts...)
	if token != "" {
		opts = append(opts, testserver.Bearer(token), connect.WithInterceptors(streamBearer(token)), recordForeign(token))
	}
	return rallyev1connect.NewLeaderboardServiceClient(p.Client, srv.URL, opts...)
}

// game is a challenge with two reps playing, on a running server.
type game struct {
	srv       *testserver.Server
	company   testserver.Company
	challenge uuid.UUID
	board     uuid.UUID
	alice     org.User
	bob       org.User
	aliceTok  string
	outTok    string // a rep of the company outside the challenge
}

func newGame(t *testing.T, srv *testserver.Server) game {
	t.Helper()
	ctx := context.Background()
	g := game{srv: srv, company: testserver.NewCompany(t, srv.App.Org), challenge: uuid.New()}
	g.alice, g.aliceTok = testserver.NewPerson(t, srv.App.Org, g.company, []rallye.Role{rallye.RoleRep})
	g.bob, _ = testserver.NewPerson(t, srv.App.Org, g.company, []rallye.Role{rallye.RoleRep})
	_, g.outTok = testserver.NewPerson(t, srv.App.Org, g.company, []rallye.Role{rallye.RoleRep})
	g.board = leaderboard.ChallengeBoardID(g.challenge, leaderboard.KindIndividual)
	err := srv.App.DB.InTenant(ctx, g.company.Tenant.ID, func(tx pgx.Tx) error {
		boards := srv.App.Boards.Boards
		if err := boards.CreateChallengeBoards(ctx, tx, g.company.Tenant.ID, leaderboard.ChallengeBoards{
			ChallengeID: g.challenge, StartsAt: time.Now().Add(-time.Hour), EndsAt: time.Now().Add(24 * time.Hour),
		}); err != nil {
			return err
		}
		return boards.Enroll(ctx, tx, g.company.Tenant.ID, g.challenge,
			[]leaderboard.Participant{{UserID: g.alice.ID}, {UserID: g.bob.ID}})
	})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// score records points through the scoring seam, as the challenge area
// will, on the given server instance.
func (g game) score(t *testing.T, on *testserver.Server, key string, u org.User, points int64) {
	t.Helper()
	ctx := context.Background()
	var r leaderboard.Receipt
	err := on.App.DB.InTenant(ctx, g.company.Tenant.ID, func(tx pgx.Tx) error {
		var err error
		r, err = on.App.Boards.Scores.Record(ctx, tx, g.company.Tenant.ID, []leaderboard.Entry{
			{Key: key, UserID: u.ID, ChallengeID: g.challenge, Points: points, At: time.Now(), Reason: "mission:test"},
		})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	on.App.Boards.Scores.Publish(ctx, r)
}

// TestLeaderboardEndToEnd drives the leaderboard RPCs with the generated
// client over Connect, gRPC and gRPC-Web.
func TestLeaderboardEndToEnd(t *testing.T) {
	srv := testserver.Start(t)
	g := newGame(t, srv)
	globex := testserver.NewCompany(t, srv.App.Org)
	g.score(t, srv, "a1", g.alice, 120)
	g.score(t, srv, "b1", g.bob, 300)

	for _, proto := range testserver.Protocols() {
		t.Run(proto.Name, func(t *testing.T) {
			ctx := context.Background()
			alice := boardClient(srv, proto, g.aliceTok)

			res, err := alice.GetRanking(ctx, &rallyev1.GetRankingRequest{BoardId: g.board.String(), PageSize: 10, Around: 2})
			if err != nil {
				t.Fatal(err)
			}
			r := res.Ranking
			if r.ParticipantCount != 2 || len(r.Entries) != 2 || r.Entries[0].ParticipantId != g.bob.ID.String() || r.Entries[0].Points != 300 {
				t.Fatalf("ranking = %v", r)
			}
			pl := r.Placement
			if pl.GetEntry().GetRank() != 2 || pl.GetNextRank() != 1 || pl.GetPointsToNextRank() != 181 || len(pl.GetAbove()) != 1 || pl.GetEntry().GetDisplayName() == "" {
				t.Fatalf("placement = %v", pl)
			}

			list, err := alice.ListBoards(ctx, &rallyev1.ListBoardsRequest{})
			if err != nil {
				t.Fatal(err)
			}
			if len(list.CurrentPeriods) != 4 || list.CurrentPeriods[0].GetNextResetTime() == nil {
				t.Fatalf("current periods = %v", list.CurrentPeriods)
			}
			found := false
			for _, b := range list.Boards {
				found = found || b.Id == g.board.String()
			}
			if !found {
				t.Fatal("the challenge's board is not listed")
			}

			t.Run("ErrOtherTenant", func(t *testing.T) {
				other := boardClient(srv, proto, foreign(globex.AdminToken))
				_, err := other.GetRanking(ctx, &rallyev1.GetRankingRequest{BoardId: g.board.String()})
				wantCode(t, err, connect.CodeNotFound)
				stream, err := other.WatchRanking(ctx, &rallyev1.WatchRankingRequest{BoardId: g.board.String()})
				if err == nil {
					stream.Receive()
					err = stream.Err()
					_ = stream.Close()
				}
				wantCode(t, err, connect.CodeNotFound)
				ls, err := other.ListBoards(ctx, &rallyev1.ListBoardsRequest{ChallengeId: g.challenge.String()})
				if err != nil || len(ls.Boards) != 0 {
					t.Fatalf("another company lists %v (%v)", ls.GetBoards(), err)
				}
			})
			t.Run("ErrPermissionDenied", func(t *testing.T) {
				_, err := boardClient(srv, proto, g.outTok).GetRanking(ctx, &rallyev1.GetRankingRequest{BoardId: g.board.String()})
				wantCode(t, err, connect.CodePermissionDenied)
			})
			t.Run("ErrInvalidNamesField", func(t *testing.T) {
				_, err := alice.GetRanking(ctx, &rallyev1.GetRankingRequest{BoardId: "nope"})
				wantCode(t, err, connect.CodeInvalidArgument)
				if !strings.Contains(err.Error(), "board_id") {
					t.Fatalf("error does not name the field: %v", err)
				}
				_, err = alice.GetRanking(ctx, &rallyev1.GetRankingRequest{BoardId: g.board.String(), Around: 99})
				wantCode(t, err, connect.CodeInvalidArgument)
				_, err = alice.GetRanking(ctx, &rallyev1.GetRankingRequest{BoardId: g.board.String(), PageToken: "garbage"})
				wantCode(t, err, connect.CodeInvalidArgument)
				if !strings.Contains(err.Error(), "page_token") {
					t.Fatalf("error does not name the field: %v", err)
				}
			})
			t.Run("Pages", func(t *testing.T) {
				first, err := alice.GetRanking(ctx, &rallyev1.GetRankingRequest{BoardId: g.board.String(), PageSize: 1})
				if err != nil || first.Ranking.NextPageToken == "" {
					t.Fatalf("first page: %v, %v", first, err)
				}
				second, err := alice.GetRanking(ctx, &rallyev1.GetRankingRequest{BoardId: g.board.String(), PageSize: 1, PageToken: first.Ranking.NextPageToken})
				if err != nil || len(second.Ranking.Entries) != 1 || second.Ranking.Entries[0].Position != 2 || second.Ranking.NextPageToken != "" {
					t.Fatalf("second page: %v, %v", second, err)
				}
			})
		})
	}
}

// TestWatchRankingAcrossInstances watches a board on one server while the
// points are recorded on another sharing the database and Redis: the change
// reaches the stream through Redis pub/sub.
func TestWatchRankingAcrossInstances(t *testing.T) {
	a := testserver.Start(t)
	b := testserver.Start(t, testserver.Sharing(a))
	g := newGame(t, a)
	for i, proto := range testserver.Protocols() {
		t.Run(proto.Name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			stream, err := boardClient(b, proto, g.aliceTok).WatchRanking(ctx, &rallyev1.WatchRankingRequest{BoardId: g.board.String(), Around: 1})
			if err != nil {
				t.Fatal(err)
			}
			defer stream.Close()
			if !stream.Receive() {
				t.Fatalf("no first message: %v", stream.Err())
			}
			before := stream.Msg().Ranking.GetPlacement().GetEntry().GetPoints()
			g.score(t, a, "w"+proto.Name, g.alice, int64(10*(i+1)))
			for stream.Receive() {
				if stream.Msg().Ranking.GetPlacement().GetEntry().GetPoints() == before+int64(10*(i+1)) {
					return
				}
			}
			t.Fatalf("the stream ended without the change: %v", stream.Err())
		})
	}
}

// TestRepairJobHealsAFailedPublish records points whose Publish cannot
// reach Redis: the repair job enqueued in the scoring transaction, run by
// the server's job queue, brings the live ranking to the PostgreSQL totals.
func TestRepairJobHealsAFailedPublish(t *testing.T) {
	srv := testserver.Start(t)
	g := newGame(t, srv)
	ctx := context.Background()
	alice := boardClient(srv, testserver.Protocols()[0], g.aliceTok)
	if _, err := alice.GetRanking(ctx, &rallyev1.GetRankingRequest{BoardId: g.board.String()}); err != nil {
		t.Fatal(err) // the board is now live in Redis
	}
	broken := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	_ = broken.Close()
	scorer := leaderboard.New(leaderboard.Deps{DB: srv.App.DB, Redis: broken, Keys: srv.App.Keys})
	scorer.SetJobs(srv.App.River)
	defer scorer.Close()
	var r leaderboard.Receipt
	err := srv.App.DB.InTenant(ctx, g.company.Tenant.ID, func(tx pgx.Tx) error {
		var err error
		r, err = scorer.Scores.Record(ctx, tx, g.company.Tenant.ID, []leaderboard.Entry{
			{Key: "lost", UserID: g.alice.ID, ChallengeID: g.challenge, Points: 77, At: time.Now()}})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	scorer.Scores.Publish(ctx, r) // fails: Redis is unreachable from this instance
	deadline := time.Now().Add(15 * time.Second)
	for {
		res, err := alice.GetRanking(ctx, &rallyev1.GetRankingRequest{BoardId: g.board.String()})
		if err != nil {
			t.Fatal(err)
		}
		if res.Ranking.Placement.GetEntry().GetPoints() == 77 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the repair job did not heal the ranking: %v", res.Ranking.Placement)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
