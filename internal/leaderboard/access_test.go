package leaderboard_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/rallyehq/rallye/internal/leaderboard"
	"github.com/rallyehq/rallye/internal/org"
	"github.com/rallyehq/rallye/internal/rallye"
)

func (b bundle) person(t *testing.T, role rallye.Role, teams ...uuid.UUID) rallye.Principal {
	t.Helper()
	u, err := b.org.CreateUser(context.Background(), b.op, org.CreateUserRequest{User: org.UserInput{
		DisplayName: "P", Email: uuid.NewString() + "@acme.test", Locale: org.LocaleFR,
		Roles: []rallye.Role{role}, TeamIDs: teams,
	}})
	if err != nil {
		t.Fatal(err)
	}
	return rallye.Principal{TenantID: b.tenant.ID, UserID: u.ID, Roles: u.Roles}
}

func TestWhoSeesWhichBoard(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	north, err := b.org.CreateTeam(ctx, b.op, org.CreateTeamRequest{Name: "North"})
	if err != nil {
		t.Fatal(err)
	}
	northEast, err := b.org.CreateTeam(ctx, b.op, org.CreateTeamRequest{Name: "North-East", ParentID: north.ID})
	if err != nil {
		t.Fatal(err)
	}
	south, _ := b.teams(t, "South", "West")
	player := b.person(t, rallye.RoleRep, northEast.ID)
	outsider := b.person(t, rallye.RoleRep, south)
	regional := b.person(t, rallye.RoleManager, north.ID)
	otherManager := b.person(t, rallye.RoleManager, south)
	hr := b.person(t, rallye.RoleHR)
	challenge := b.challenge(t, leaderboard.ChallengeBoards{Team: true, StartsAt: challengeStart},
		leaderboard.Participant{UserID: player.UserID, TeamID: northEast.ID})
	b.record(t, leaderboard.Entry{Key: "1", UserID: player.UserID, ChallengeID: challenge, Points: 5, At: time.Now()})
	periods, err := b.svc.CurrentPeriods(ctx, b.op)
	if err != nil {
		t.Fatal(err)
	}
	week := periods[0].ID
	individual := leaderboard.ChallengeBoardID(challenge, leaderboard.KindIndividual)
	teamTotal := leaderboard.ChallengeBoardID(challenge, leaderboard.KindTeamTotal)
	_, stranger := b.company(t, "globex")

	tests := []struct {
		name  string
		who   rallye.Principal
		board uuid.UUID
		code  rallye.Code
	}{
		{"RepSeesOwnChallenge", player, individual, ""},
		{"RepSeesOwnChallengeTeams", player, teamTotal, ""},
		{"RepSeesPeriodBoard", outsider, week, ""},
		{"ErrRepOutsideChallenge", outsider, individual, rallye.CodePermissionDenied},
		{"ManagerOfParentTeamSees", regional, individual, ""},
		{"ErrManagerOfOtherTeam", otherManager, teamTotal, rallye.CodePermissionDenied},
		{"HRSeesAll", hr, teamTotal, ""},
		{"AdminSeesAll", b.op, individual, ""},
		{"ErrOtherCompany", stranger, individual, rallye.CodeNotFound},
		{"ErrOtherCompanyPeriod", stranger, week, rallye.CodeNotFound},
		{"ErrNoSuchBoard", b.op, uuid.New(), rallye.CodeNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := b.svc.Ranking(ctx, tt.who, leaderboard.RankingRequest{BoardID: tt.board})
			wantCode(t, err, tt.code)
		})
	}

	t.Run("MeIsTheCallerOrTheirTeam", func(t *testing.T) {
		r, err := b.svc.Ranking(ctx, player, leaderboard.RankingRequest{BoardID: teamTotal})
		if err != nil || r.Me == nil || r.Me.ParticipantID != northEast.ID || r.Me.DisplayName != "North-East" {
			t.Fatalf("team placement = %+v, %v", r.Me, err)
		}
		r, err = b.svc.Ranking(ctx, player, leaderboard.RankingRequest{BoardID: week})
		if err != nil || r.Me == nil || r.Me.ParticipantID != player.UserID || r.Me.Points != 5 {
			t.Fatalf("period placement = %+v, %v", r.Me, err)
		}
	})

	list := []struct {
		name string
		who  rallye.Principal
		want int // boards listed (4 periods... of which the week's and others exist once scored)
	}{
		{"RepInChallenge", player, 4 + 3},
		{"RepOutside", outsider, 4},
		{"ManagerOfParentTeam", regional, 4 + 3},
		{"ManagerOfOtherTeam", otherManager, 4},
		{"HR", hr, 4 + 3},
		{"OtherCompany", stranger, 0},
	}
	for _, tt := range list {
		t.Run("List"+tt.name, func(t *testing.T) {
			boards, next, err := b.svc.ListBoards(ctx, tt.who, leaderboard.ListBoardsRequest{PageSize: 3})
			if err != nil {
				t.Fatal(err)
			}
			all := boards
			for next != "" {
				boards, next, err = b.svc.ListBoards(ctx, tt.who, leaderboard.ListBoardsRequest{PageSize: 3, PageToken: next})
				if err != nil {
					t.Fatal(err)
				}
				all = append(all, boards...)
			}
			seen := map[uuid.UUID]bool{}
			for _, bd := range all {
				if seen[bd.ID] {
					t.Fatalf("board %s listed twice", bd.ID)
				}
				seen[bd.ID] = true
			}
			if len(all) != tt.want {
				t.Fatalf("listed %d boards, want %d: %v", len(all), tt.want, fmt.Sprint(all))
			}
		})
	}
}

func TestPastPeriodsStayQueryable(t *testing.T) {
	t.Parallel()
	b := setup(t)
	users := b.people(t, 2)
	lastMonth := time.Now().AddDate(0, -1, 0)
	b.record(t,
		leaderboard.Entry{Key: "old", UserID: users[0], Points: 50, At: lastMonth},
		leaderboard.Entry{Key: "new", UserID: users[1], Points: 10, At: time.Now()},
	)
	boards, _, err := b.svc.ListBoards(context.Background(), b.op, leaderboard.ListBoardsRequest{Period: leaderboard.PeriodMonth})
	if err != nil {
		t.Fatal(err)
	}
	if len(boards) != 2 || !boards[0].StartsAt.After(boards[1].StartsAt) {
		t.Fatalf("month boards = %v", boards)
	}
	winners := b.ranking(t, leaderboard.RankingRequest{BoardID: boards[1].ID})
	if len(winners.Entries) != 1 || winners.Entries[0].ParticipantID != users[0] || winners.Entries[0].Points != 50 {
		t.Fatalf("last month's winners = %+v", winners.Entries)
	}
	if !boards[1].EndsAt.Equal(boards[0].StartsAt) {
		t.Fatalf("last month ends %v, this month starts %v", boards[1].EndsAt, boards[0].StartsAt)
	}
}

func TestCurrentPeriodBoardReadsEmptyBeforeAnyPoints(t *testing.T) {
	t.Parallel()
	b := setup(t)
	periods, err := b.svc.CurrentPeriods(context.Background(), b.op)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range periods {
		r := b.ranking(t, leaderboard.RankingRequest{BoardID: p.ID})
		if r.Participants != 0 || r.Board.Period != p.Period {
			t.Fatalf("%s board = %+v", p.Period, r)
		}
		if p.Period != leaderboard.PeriodAllTime && !p.EndsAt.After(time.Now()) {
			t.Fatalf("%s resets at %v, not in the future", p.Period, p.EndsAt)
		}
	}
}

func TestWatchPushesChanges(t *testing.T) {
	t.Parallel()
	b := setup(t)
	users := b.people(t, 3)
	challenge := b.challenge(t, leaderboard.ChallengeBoards{StartsAt: challengeStart}, enrolled(users)...)
	id := leaderboard.ChallengeBoardID(challenge, leaderboard.KindIndividual)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	updates := make(chan leaderboard.Ranking, 16)
	done := make(chan error, 1)
	go func() {
		done <- b.svc.Watch(ctx, b.op, leaderboard.RankingRequest{BoardID: id, ParticipantID: users[1], Around: 1},
			func(r leaderboard.Ranking) error { updates <- r; return nil })
	}()
	next := func() leaderboard.Ranking {
		t.Helper()
		select {
		case r := <-updates:
			return r
		case err := <-done:
			t.Fatalf("watch ended: %v", err)
		case <-time.After(10 * time.Second):
			t.Fatal("no update within 10s")
		}
		return leaderboard.Ranking{}
	}
	first := next()
	if first.Me == nil || first.Me.Points != 0 {
		t.Fatalf("initial placement = %+v", first.Me)
	}
	b.record(t, leaderboard.Entry{Key: "1", UserID: users[1], ChallengeID: challenge, Points: 40, At: challengeStart.Add(time.Hour)})
	for r := next(); r.Me.Points != 40 || r.Me.Rank != 1; r = next() {
		// intermediate states (the enrolment's repair) may arrive first
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestEndedPeriodBoardsExpireFromRedis(t *testing.T) {
	t.Parallel()
	b := setup(t)
	users := b.people(t, 1)
	b.record(t, leaderboard.Entry{Key: "old", UserID: users[0], Points: 5, At: time.Now().AddDate(0, 0, -10)})
	boards, _, err := b.svc.ListBoards(context.Background(), b.op, leaderboard.ListBoardsRequest{Period: leaderboard.PeriodWeek})
	if err != nil || len(boards) != 1 {
		t.Fatalf("week boards = %v, %v", boards, err)
	}
	b.ranking(t, leaderboard.RankingRequest{BoardID: boards[0].ID}) // rebuilt on read, with an expiry
	z := leaderboard.KeyNames(b.keys, boards[0].ID)[1]
	if ttl := b.rdb.TTL(context.Background(), z).Val(); ttl <= 0 || ttl > 25*time.Hour {
		t.Fatalf("TTL of an ended board = %v, want about a day", ttl)
	}
	// The sweep gives an expiry to ended boards that lost theirs, and
	// re-enqueues lost repairs; it runs across companies.
	b.rdb.Persist(context.Background(), z)
	if err := b.svc.SweepWorker().Work(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	if ttl := b.rdb.TTL(context.Background(), z).Val(); ttl <= 0 {
		t.Fatalf("TTL after the sweep = %v", ttl)
	}
}
