package leaderboard_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/rallyehq/rallye/internal/leaderboard"
	"github.com/rallyehq/rallye/internal/rallye"
	"github.com/rallyehq/rallye/internal/testutil"
)

var challengeStart = time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)

// randomBoard creates a challenge with n enrolled people and records random
// entries crafted to collide: few point values and few instants, so that
// equal totals and equal instants are common. A few people never score.
func randomBoard(t *testing.T, b bundle, seed uint64, n int, shared bool) (uuid.UUID, leaderboard.Board, []refStanding) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, seed))
	users := b.people(t, n)
	c := leaderboard.ChallengeBoards{SharedRanks: shared, StartsAt: challengeStart, EndsAt: challengeStart.Add(30 * 24 * time.Hour)}
	challenge := b.challenge(t, c, enrolled(users)...)
	var entries []leaderboard.Entry
	for i, u := range users {
		if i%10 == 9 {
			continue // enrolled, never scores
		}
		for j := range rng.IntN(4) + 1 {
			entries = append(entries, leaderboard.Entry{
				Key: fmt.Sprintf("e-%d-%d", i, j), UserID: u, ChallengeID: challenge,
				Points: []int64{-5, 0, 5, 10, 10, 20}[rng.IntN(6)],
				// A handful of instants, and sub-second ones that share a tick.
				At:     challengeStart.Add(time.Duration(rng.IntN(8))*time.Second + time.Duration(rng.IntN(3))*300*time.Millisecond),
				Reason: "mission:test",
			})
		}
	}
	// Several calls, out of order, some entries recorded twice.
	rng.Shuffle(len(entries), func(i, j int) { entries[i], entries[j] = entries[j], entries[i] })
	for start := 0; start < len(entries); start += 37 {
		b.record(t, entries[start:min(start+37, len(entries))]...)
	}
	b.record(t, entries[:20]...)
	id := leaderboard.ChallengeBoardID(challenge, leaderboard.KindIndividual)
	board := b.ranking(t, leaderboard.RankingRequest{BoardID: id}).Board
	return id, board, reference(totals(users, entries), challengeStart, time.Second, shared)
}

// checkRanking compares every page, and the placement of every fifth
// participant (neighbours, gap to the next rank), with the reference.
func checkRanking(t *testing.T, b bundle, boardID uuid.UUID, want []refStanding) {
	t.Helper()
	var got []leaderboard.Standing
	token := ""
	for pages := 0; ; pages++ {
		r := b.ranking(t, leaderboard.RankingRequest{BoardID: boardID, PageSize: 7, PageToken: token})
		if r.Participants != int64(len(want)) {
			t.Fatalf("participants = %d, want %d", r.Participants, len(want))
		}
		got = append(got, r.Entries...)
		if r.NextPageToken == "" || pages > len(want) {
			break
		}
		token = r.NextPageToken
	}
	if len(got) != len(want) {
		t.Fatalf("pages hold %d entries, want %d", len(got), len(want))
	}
	for i, w := range want {
		g := got[i]
		if g.ParticipantID != w.id || g.Points != w.points || g.Position != w.position || g.Rank != w.rank {
			t.Fatalf("entry %d = %s %d pts pos %d rank %d, want %s %d pts pos %d rank %d",
				i, g.ParticipantID, g.Points, g.Position, g.Rank, w.id, w.points, w.position, w.rank)
		}
		if g.DisplayName == "" {
			t.Fatalf("entry %d has no display name", i)
		}
	}
	const k = 3
	for i := 0; i < len(want); i += 5 {
		w := want[i]
		r := b.ranking(t, leaderboard.RankingRequest{BoardID: boardID, PageSize: 1, ParticipantID: w.id, Around: k})
		me := r.Me
		if me == nil || me.ParticipantID != w.id || me.Position != w.position || me.Rank != w.rank || me.Points != w.points {
			t.Fatalf("placement of %s = %+v, want %+v", w.id, me, w)
		}
		wantIDs := func(s []refStanding) []uuid.UUID {
			out := []uuid.UUID{}
			for _, x := range s {
				out = append(out, x.id)
			}
			return out
		}
		gotIDs := func(s []leaderboard.Standing) []uuid.UUID {
			out := []uuid.UUID{}
			for _, x := range s {
				out = append(out, x.ParticipantID)
			}
			return out
		}
		if a, wa := gotIDs(me.Above), wantIDs(want[max(0, i-k):i]); !slices.Equal(a, wa) {
			t.Fatalf("above %d: %v, want %v", i, a, wa)
		}
		if bl, wb := gotIDs(me.Below), wantIDs(want[i+1:min(len(want), i+k+1)]); !slices.Equal(bl, wb) {
			t.Fatalf("below %d: %v, want %v", i, bl, wb)
		}
		var nextRank, gap int64
		if r.Board.SharedRanks {
			for j := i - 1; j >= 0; j-- {
				if want[j].points > w.points {
					nextRank, gap = want[j].rank, want[j].points-w.points
					break
				}
			}
		} else if i > 0 {
			nextRank, gap = want[i-1].position, want[i-1].points+1-w.points
		}
		if me.NextRank != nextRank || me.PointsToNextRank != gap {
			t.Fatalf("next rank of %d: rank %d (+%d pts), want rank %d (+%d pts)", i, me.NextRank, me.PointsToNextRank, nextRank, gap)
		}
	}
}

func TestRankingMatchesReference(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name   string
		shared bool
	}{
		{"DistinctRanks", false},
		{"SharedRanks", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			id, _, want := randomBoard(t, b, 42, 120, tt.shared)
			checkRanking(t, b, id, want)
		})
	}
}

func TestFlushThenRebuildGivesIdenticalRanks(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id, _, want := randomBoard(t, b, 7, 80, false)
	checkRanking(t, b, id, want)
	testutil.DeleteKeys(context.Background(), b.rdb, b.keys.Prefix) // FLUSH this test's keys
	if n, _ := b.rdb.Exists(context.Background(), leaderboard.KeyNames(b.keys, id)[1]).Result(); n != 0 {
		t.Fatal("the board survived the flush")
	}
	checkRanking(t, b, id, want)
}

func TestFailedPublishIsRepairedByTheJob(t *testing.T) {
	t.Parallel()
	b := setup(t)
	users := b.people(t, 30)
	challenge := b.challenge(t, leaderboard.ChallengeBoards{StartsAt: challengeStart}, enrolled(users)...)
	id := leaderboard.ChallengeBoardID(challenge, leaderboard.KindIndividual)
	var entries []leaderboard.Entry
	for i, u := range users[:20] {
		entries = append(entries, leaderboard.Entry{Key: fmt.Sprintf("a%d", i), UserID: u, ChallengeID: challenge, Points: int64(i), At: challengeStart.Add(time.Minute)})
	}
	b.record(t, entries...)
	b.ranking(t, leaderboard.RankingRequest{BoardID: id}) // the board is live in Redis

	// Redis fails after PostgreSQL committed: Publish cannot write.
	broken := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	_ = broken.Close()
	brokenSvc := b.newService(t, broken)
	var more []leaderboard.Entry
	for i, u := range users {
		more = append(more, leaderboard.Entry{Key: fmt.Sprintf("b%d", i), UserID: u, ChallengeID: challenge, Points: int64(3 * (30 - i)), At: challengeStart.Add(time.Hour)})
	}
	if _, err := b.tryRecord(brokenSvc, more...); err != nil {
		t.Fatal(err)
	}
	all := append(slices.Clone(entries), more...)
	want := reference(totals(users, all), challengeStart, time.Second, false)
	if r := b.ranking(t, leaderboard.RankingRequest{BoardID: id, PageSize: 1}); r.Entries[0].ParticipantID == want[0].id {
		t.Fatal("the live ranking is already up to date: the failure was not simulated")
	}
	var pending int
	if err := b.db.Pool.QueryRow(context.Background(), leaderboard.PendingRepairsQuery).Scan(&pending); err != nil || pending == 0 {
		t.Fatalf("no repair job enqueued in the scoring transaction (%d, %v)", pending, err)
	}
	if err := b.svc.RepairOnce(context.Background(), b.tenant.ID, id); err != nil {
		t.Fatal(err)
	}
	checkRanking(t, b, id, want)
}

func TestReplayingEntriesChangesNothing(t *testing.T) {
	t.Parallel()
	b := setup(t)
	users := b.people(t, 3)
	challenge := b.challenge(t, leaderboard.ChallengeBoards{StartsAt: challengeStart}, enrolled(users)...)
	entries := []leaderboard.Entry{
		{Key: "k1", UserID: users[0], ChallengeID: challenge, Points: 10, At: challengeStart.Add(time.Minute)},
		{Key: "k2", UserID: users[1], ChallengeID: challenge, Points: 7, At: challengeStart.Add(time.Minute)},
		{Key: "k2", UserID: users[1], ChallengeID: challenge, Points: 7, At: challengeStart.Add(time.Minute)}, // repeated in the call
	}
	first := b.record(t, entries...)
	if first.Recorded != 2 {
		t.Fatalf("recorded %d, want 2", first.Recorded)
	}
	before := b.ranking(t, leaderboard.RankingRequest{BoardID: leaderboard.ChallengeBoardID(challenge, leaderboard.KindIndividual)})
	again := b.record(t, entries...)
	if again.Recorded != 0 || again.Duplicates != 2 {
		t.Fatalf("replay recorded %d (duplicates %d)", again.Recorded, again.Duplicates)
	}
	after := b.ranking(t, leaderboard.RankingRequest{BoardID: leaderboard.ChallengeBoardID(challenge, leaderboard.KindIndividual)})
	if fmt.Sprint(before.Entries) != fmt.Sprint(after.Entries) {
		t.Fatalf("replay changed the ranking:\n%v\n%v", before.Entries, after.Entries)
	}
}

func TestConcurrentRecordsGiveExactTotals(t *testing.T) {
	t.Parallel()
	b := setup(t)
	users := b.people(t, 2)
	challenge := b.challenge(t, leaderboard.ChallengeBoards{StartsAt: challengeStart}, enrolled(users)...)
	const workers, each = 8, 10
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				// Both people in every call, in opposite orders: no deadlock.
				es := []leaderboard.Entry{
					{Key: fmt.Sprintf("w%d-%d-a", w, i), UserID: users[0], ChallengeID: challenge, Points: 3, At: challengeStart.Add(time.Duration(i) * time.Second)},
					{Key: fmt.Sprintf("w%d-%d-b", w, i), UserID: users[1], ChallengeID: challenge, Points: 1, At: challengeStart.Add(time.Duration(i) * time.Second)},
				}
				if w%2 == 1 {
					es[0], es[1] = es[1], es[0]
				}
				if _, err := b.tryRecord(b.svc, es...); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	r := b.ranking(t, leaderboard.RankingRequest{BoardID: leaderboard.ChallengeBoardID(challenge, leaderboard.KindIndividual)})
	if len(r.Entries) != 2 || r.Entries[0].Points != 3*workers*each || r.Entries[1].Points != workers*each {
		t.Fatalf("totals = %+v, want %d and %d", r.Entries, 3*workers*each, workers*each)
	}
	// The period boards got the same totals.
	periods, err := b.svc.CurrentPeriods(context.Background(), b.op)
	if err != nil {
		t.Fatal(err)
	}
	allTime := periods[len(periods)-1]
	r = b.ranking(t, leaderboard.RankingRequest{BoardID: allTime.ID, ParticipantID: users[0]})
	if r.Me == nil || r.Me.Points != 3*workers*each {
		t.Fatalf("all-time total = %+v", r.Me)
	}
}

func TestRecordRefusals(t *testing.T) {
	t.Parallel()
	b := setup(t)
	users := b.people(t, 2)
	challenge := b.challenge(t, leaderboard.ChallengeBoards{StartsAt: challengeStart}, enrolled(users[:1])...)
	at := challengeStart.Add(time.Minute)
	tests := []struct {
		name  string
		entry leaderboard.Entry
		code  rallye.Code
	}{
		{"ErrNoKey", leaderboard.Entry{UserID: users[0], Points: 1, At: at}, rallye.CodeInvalid},
		{"ErrNoUser", leaderboard.Entry{Key: "x", Points: 1, At: at}, rallye.CodeInvalid},
		{"ErrNoTime", leaderboard.Entry{Key: "x", UserID: users[0], Points: 1}, rallye.CodeInvalid},
		{"ErrTooManyPoints", leaderboard.Entry{Key: "x", UserID: users[0], Points: leaderboard.MaxValue + 1, At: at}, rallye.CodeInvalid},
		{"ErrNotEnrolled", leaderboard.Entry{Key: "x", UserID: users[1], ChallengeID: challenge, Points: 1, At: at}, rallye.CodeFailedPrecondition},
		{"ErrNoSuchChallenge", leaderboard.Entry{Key: "x", UserID: users[0], ChallengeID: uuid.New(), Points: 1, At: at}, rallye.CodeNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := b.tryRecord(b.svc, leaderboard.Entry{Key: "valid", UserID: users[0], Points: 5, At: at}, tt.entry)
			wantCode(t, err, tt.code)
		})
	}
	t.Run("NothingPartialWasWritten", func(t *testing.T) {
		var n int
		err := b.db.InTenant(context.Background(), b.tenant.ID, func(tx pgx.Tx) error {
			return tx.QueryRow(context.Background(), `SELECT count(*) FROM points_ledger`).Scan(&n)
		})
		if err != nil || n != 0 {
			t.Fatalf("ledger rows = %d (%v), want 0", n, err)
		}
	})
}

func TestEnrolledWithoutPointsRankLast(t *testing.T) {
	t.Parallel()
	b := setup(t)
	users := b.people(t, 4)
	challenge := b.challenge(t, leaderboard.ChallengeBoards{StartsAt: challengeStart}, enrolled(users)...)
	id := leaderboard.ChallengeBoardID(challenge, leaderboard.KindIndividual)
	// Enrolment reaches Redis through the repair job.
	if err := b.svc.RepairOnce(context.Background(), b.tenant.ID, id); err != nil {
		t.Fatal(err)
	}
	b.record(t,
		leaderboard.Entry{Key: "1", UserID: users[2], ChallengeID: challenge, Points: 5, At: challengeStart.Add(time.Hour)},
		leaderboard.Entry{Key: "2", UserID: users[3], ChallengeID: challenge, Points: -5, At: challengeStart.Add(time.Hour)},
		leaderboard.Entry{Key: "3", UserID: users[0], ChallengeID: challenge, Points: 5, At: challengeStart.Add(2 * time.Hour)},
		leaderboard.Entry{Key: "4", UserID: users[0], ChallengeID: challenge, Points: -5, At: challengeStart.Add(3 * time.Hour)},
	)
	r := b.ranking(t, leaderboard.RankingRequest{BoardID: id, ParticipantID: users[1], Around: 5})
	var got []uuid.UUID
	for _, e := range r.Entries {
		got = append(got, e.ParticipantID)
	}
	// 5 points; 0 points reached by a correction; 0 points never scored; -5.
	if want := []uuid.UUID{users[2], users[0], users[1], users[3]}; !slices.Equal(got, want) {
		t.Fatalf("order = %v, want %v", got, want)
	}
	if r.Me.Position != 3 || !r.Me.ReachedAt.IsZero() || r.Participants != 4 {
		t.Fatalf("never-scored placement = %+v of %d", r.Me.Standing, r.Participants)
	}
}

func TestTeamBoards(t *testing.T) {
	t.Parallel()
	b := setup(t)
	users := b.people(t, 5)
	red, blue := b.teams(t, "Red", "Blue")
	challenge := b.challenge(t, leaderboard.ChallengeBoards{Team: true, StartsAt: challengeStart},
		leaderboard.Participant{UserID: users[0], TeamID: red}, leaderboard.Participant{UserID: users[1], TeamID: red},
		leaderboard.Participant{UserID: users[2], TeamID: red},
		leaderboard.Participant{UserID: users[3], TeamID: blue}, leaderboard.Participant{UserID: users[4], TeamID: blue})
	at := challengeStart.Add(time.Hour)
	b.record(t,
		leaderboard.Entry{Key: "1", UserID: users[0], ChallengeID: challenge, Points: 30, At: at},
		leaderboard.Entry{Key: "2", UserID: users[1], ChallengeID: challenge, Points: 30, At: at},
		leaderboard.Entry{Key: "3", UserID: users[3], ChallengeID: challenge, Points: 40, At: at},
	)
	total := b.ranking(t, leaderboard.RankingRequest{BoardID: leaderboard.ChallengeBoardID(challenge, leaderboard.KindTeamTotal), ParticipantID: blue})
	if len(total.Entries) != 2 || total.Entries[0].ParticipantID != red || total.Entries[0].Points != 60 || total.Entries[0].DisplayName != "Red" {
		t.Fatalf("team totals = %+v", total.Entries)
	}
	if total.Me.NextRank != 1 || total.Me.PointsToNextRank != 21 {
		t.Fatalf("blue needs %d points for rank %d, want 21 for 1", total.Me.PointsToNextRank, total.Me.NextRank)
	}
	avg := b.ranking(t, leaderboard.RankingRequest{BoardID: leaderboard.ChallengeBoardID(challenge, leaderboard.KindTeamAverage), ParticipantID: red})
	// Red: 60 points / 3 = 20; Blue: 40 / 2 = 20, reached at the same instant:
	// the higher id wins the tie; Red needs a strictly higher average.
	first, second := avg.Entries[0], avg.Entries[1]
	if first.AveragePoints != 20 || second.AveragePoints != 20 || first.Members+second.Members != 5 {
		t.Fatalf("team averages = %+v", avg.Entries)
	}
	if avg.Me.ParticipantID == first.ParticipantID {
		return
	}
	// 20.00 -> 20.01 average on 3 members: 60.03 points, so 61 in whole points.
	if avg.Me.PointsToNextRank != 1 {
		t.Fatalf("red needs %d points, want 1", avg.Me.PointsToNextRank)
	}
}

func (b bundle) teams(t *testing.T, names ...string) (uuid.UUID, uuid.UUID) {
	t.Helper()
	var ids []uuid.UUID
	for _, n := range names {
		team, err := b.org.CreateTeam(context.Background(), b.op, orgTeam(n))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, team.ID)
	}
	return ids[0], ids[1]
}

func TestFrozenBoardIsServedFromPostgres(t *testing.T) {
	t.Parallel()
	for _, shared := range []bool{false, true} {
		t.Run(fmt.Sprintf("Shared=%v", shared), func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			id, board, want := randomBoard(t, b, 99, 60, shared)
			err := b.db.InTenant(context.Background(), b.tenant.ID, func(tx pgx.Tx) error {
				return b.svc.Boards.Freeze(context.Background(), tx, b.tenant.ID, board.ChallengeID)
			})
			if err != nil {
				t.Fatal(err)
			}
			if err := b.svc.RepairOnce(context.Background(), b.tenant.ID, id); err != nil { // drops the live copy
				t.Fatal(err)
			}
			if n, _ := b.rdb.Exists(context.Background(), leaderboard.KeyNames(b.keys, id)[:3]...).Result(); n != 0 {
				t.Fatalf("%d live keys remain after the freeze", n)
			}
			checkRanking(t, b, id, want)
			r := b.ranking(t, leaderboard.RankingRequest{BoardID: id})
			if !r.Board.Frozen() {
				t.Fatal("the board does not say it is final")
			}
			_, err = b.tryRecord(b.svc, leaderboard.Entry{Key: "late", UserID: want[0].id, ChallengeID: board.ChallengeID, Points: 1, At: challengeStart})
			wantCode(t, err, rallye.CodeFailedPrecondition)
		})
	}
}

func TestOvertakenEventFires(t *testing.T) {
	t.Parallel()
	b := setup(t)
	users := b.people(t, 3)
	challenge := b.challenge(t, leaderboard.ChallengeBoards{StartsAt: challengeStart}, enrolled(users)...)
	id := leaderboard.ChallengeBoardID(challenge, leaderboard.KindIndividual)
	at := challengeStart.Add(time.Hour)
	b.record(t,
		leaderboard.Entry{Key: "a", UserID: users[0], ChallengeID: challenge, Points: 30, At: at},
		leaderboard.Entry{Key: "b", UserID: users[1], ChallengeID: challenge, Points: 20, At: at},
		leaderboard.Entry{Key: "c", UserID: users[2], ChallengeID: challenge, Points: 10, At: at},
	)
	b.ranking(t, leaderboard.RankingRequest{BoardID: id}) // live
	b.record(t, leaderboard.Entry{Key: "d", UserID: users[2], ChallengeID: challenge, Points: 15, At: at.Add(time.Minute)})
	var got *leaderboard.Overtaken
	for _, e := range b.events.all() {
		if e.BoardID == id {
			got = &e
		}
	}
	if got == nil {
		t.Fatal("no overtaken event")
	}
	want := leaderboard.Overtaken{TenantID: b.tenant.ID, BoardID: id, ChallengeID: challenge, Kind: leaderboard.KindIndividual,
		By: users[2], ByRank: 2, Passed: []leaderboard.Passed{{ParticipantID: users[1], Rank: 3}}}
	if fmt.Sprint(*got) != fmt.Sprint(want) {
		t.Fatalf("event = %+v, want %+v", *got, want)
	}
}

func TestBoardKeysShareOneClusterSlot(t *testing.T) {
	t.Parallel()
	ks := testutil.NewRedisPrefix()
	for range 20 {
		id := uuid.New()
		names := leaderboard.KeyNames(keyspace(ks), id)
		slot := clusterSlot(names[0])
		for _, n := range names[1:] {
			if s := clusterSlot(n); s != slot {
				t.Fatalf("%s is in slot %d, %s in %d", n, s, names[0], slot)
			}
		}
	}
	// The hashing itself, against values Redis documents.
	if s := clusterSlot("{user1000}.following"); s != clusterSlot("user1000") {
		t.Fatalf("hash tag ignored: %d", s)
	}
	if s := clusterSlot("123456789"); s != 0x31C3%16384 {
		t.Fatalf("CRC16 of 123456789 = %#x", s)
	}
}

// clusterSlot is Redis Cluster's key slot: CRC16 (XMODEM) of the hash tag,
// or of the whole key without one, modulo 16384.
func clusterSlot(key string) int {
	if i := indexByte(key, '{'); i >= 0 {
		if j := indexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	var crc uint16
	for i := 0; i < len(key); i++ {
		crc ^= uint16(key[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return int(crc) % 16384
}

func indexByte(s string, c byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return i
		}
	}
	return -1
}

// A restarted Redis has lost the boards and the scripts. The first write
// after the restart finds neither; the next read rebuilds the board from
// PostgreSQL and the rankings equal the reference. (Not parallel: SCRIPT
// FLUSH is server-wide, and every script call of this package reloads.)
func TestRestartedRedisLosesBoardsAndScripts(t *testing.T) {
	b := setup(t)
	ctx := context.Background()
	users := b.people(t, 25)
	window := leaderboard.ChallengeBoards{StartsAt: challengeStart, EndsAt: challengeStart.Add(30 * 24 * time.Hour)} // ties to the second
	challenge := b.challenge(t, window, enrolled(users)...)
	id := leaderboard.ChallengeBoardID(challenge, leaderboard.KindIndividual)
	var before []leaderboard.Entry
	for i, u := range users[:15] {
		before = append(before, leaderboard.Entry{Key: fmt.Sprintf("r%d", i), UserID: u, ChallengeID: challenge,
			Points: int64(10 + i%4), At: challengeStart.Add(time.Duration(i) * time.Second)})
	}
	b.record(t, before...)
	checkRanking(t, b, id, reference(totals(users, before), challengeStart, time.Second, false))

	testutil.DeleteKeys(ctx, b.rdb, b.keys.Prefix)
	if err := b.rdb.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	var after []leaderboard.Entry
	for i, u := range users[10:] {
		after = append(after, leaderboard.Entry{Key: fmt.Sprintf("s%d", i), UserID: u, ChallengeID: challenge,
			Points: 7, At: challengeStart.Add(time.Minute + time.Duration(i)*time.Second)})
	}
	b.record(t, after...)
	checkRanking(t, b, id, reference(totals(users, append(slices.Clone(before), after...)), challengeStart, time.Second, false))
}
