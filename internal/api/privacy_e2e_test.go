package api_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	rallyev1 "github.com/rallyehq/rallye/gen/rallye/v1"
	"github.com/rallyehq/rallye/gen/rallye/v1/rallyev1connect"
	"github.com/rallyehq/rallye/internal/org"
	"github.com/rallyehq/rallye/internal/privacy"
	"github.com/rallyehq/rallye/internal/rallye"
	"github.com/rallyehq/rallye/internal/testutil/testserver"
)

func privacyClient(srv *testserver.Server, p testserver.Protocol, token string) rallyev1connect.PrivacyServiceClient {
	return rallyev1connect.NewPrivacyServiceClient(p.Client, srv.URL, append(p.Opts, testserver.Bearer(token), recordForeign(token))...)
}

// TestErasureLeavesNothingReadable: a rep scores in a challenge (calls and
// won deals), an admin exports their data (everything is there), then
// erases them. Afterwards no table of the schema holds their name, email or
// CRM id anywhere in any row, no RPC that reads people returns them, they
// are off the live board (Redis) and the board in PostgreSQL, their token
// no longer works, their events still count: the company's and teams'
// KPI roll-ups are the same rows before and after, and the events' amounts
// still add up to the reference sum of what was ingested. Refusals: a rep,
// another company, oneself, twice, no reason.
func TestErasureLeavesNothingReadable(t *testing.T) {
	srv := testserver.Start(t)
	ctx := context.Background()
	acme := testserver.NewCompany(t, srv.App.Org)
	other := testserver.NewCompany(t, srv.App.Org)
	otherTok := foreign(other.AdminToken)
	protocol := testserver.Protocols()[0]
	if _, err := srv.App.KPI.InstallModel(ctx, acme.Operator, acme.Admin.ID); err != nil {
		t.Fatal(err)
	}
	team, err := srv.App.Org.CreateTeam(ctx, acme.Operator, org.CreateTeamRequest{Name: "Nord"})
	if err != nil {
		t.Fatal(err)
	}
	const (
		name  = "Hélène Effacée-Dupont"
		email = "helene.effacee@acme.test"
		crm   = "crm-zz-erase-7731"
	)
	var reps []org.User
	for i := range 4 {
		in := org.UserInput{DisplayName: fmt.Sprintf("Collègue %d", i), Email: fmt.Sprintf("coll%d@acme.test", i),
			ExternalID: fmt.Sprintf("crm-coll-%d", i), Locale: org.LocaleFR, Roles: []rallye.Role{rallye.RoleRep}, TeamIDs: []uuid.UUID{team.ID}}
		if i == 0 {
			in.DisplayName, in.Email, in.ExternalID, in.HireDate = name, email, crm, time.Date(2024, 2, 1, 0, 0, 0, 0, time.UTC)
		}
		u, err := srv.App.Org.CreateUser(ctx, acme.Operator, org.CreateUserRequest{User: in})
		if err != nil {
			t.Fatal(err)
		}
		reps = append(reps, u)
	}
	target := reps[0]
	targetTok := testserver.Token(t, target)
	created, err := clientsFor(srv, protocol, acme.AdminToken).challenges.CreateChallenge(ctx, &rallyev1.CreateChallengeRequest{
		Definition: &rallyev1.ChallengeDefinition{Name: &rallyev1.LocalizedText{Fr: "Appels", En: "Calls"},
			ScoringRules: []*rallyev1.ScoringRule{{EventTypes: []string{"call.logged", "deal.won"}, Points: 10}}},
		TeamIds: []string{team.ID.String()}, EndTime: timestamppb.New(time.Now().Add(time.Hour)), Publish: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	var events []*rallyev1.SalesEvent
	var refAmount int64
	for i, r := range reps {
		for j := range i + 1 {
			events = append(events, &rallyev1.SalesEvent{Source: "crm", ExternalId: fmt.Sprintf("call-%d-%d", i, j), Type: "call.logged",
				OccurredAt: timestamppb.New(now), RepExternalId: r.ExternalID})
		}
		amount := int64(1000+250*i) * 100
		refAmount += amount
		events = append(events, &rallyev1.SalesEvent{Source: "crm", ExternalId: fmt.Sprintf("deal-%d", i), Type: "deal.won",
			OccurredAt: timestamppb.New(now), RepExternalId: r.ExternalID, OpportunityId: fmt.Sprintf("opp-%d", i),
			Amount: &rallyev1.Money{MinorUnits: amount, Currency: "EUR"}, DealKind: "new", OpportunityCreatedAt: timestamppb.New(now.Add(-240 * time.Hour))})
	}
	if res, err := eventClient(srv, protocol, acme.AdminToken).IngestEvents(ctx, &rallyev1.IngestEventsRequest{Events: events}); err != nil || len(res.Rejected) > 0 {
		t.Fatal(res, err)
	}
	boards := rallyev1connect.NewLeaderboardServiceClient(protocol.Client, srv.URL, testserver.Bearer(acme.AdminToken))
	var board string
	eventually(t, "everyone on the board", func() error {
		list, err := boards.ListBoards(ctx, &rallyev1.ListBoardsRequest{ChallengeId: created.Challenge.Id})
		if err != nil {
			return err
		}
		for _, b := range list.Boards {
			if b.Kind == rallyev1.BoardKind_BOARD_KIND_INDIVIDUAL {
				board = b.Id
			}
		}
		if board == "" {
			return fmt.Errorf("no board yet")
		}
		res, err := boards.GetRanking(ctx, &rallyev1.GetRankingRequest{BoardId: board, PageSize: 10})
		if err != nil {
			return err
		}
		if len(res.Ranking.GetEntries()) != len(reps) {
			return fmt.Errorf("%d on the board", len(res.Ranking.GetEntries()))
		}
		return nil
	})
	// The roll-ups have caught up when the company's revenue is there.
	sums := func() string {
		var out string
		err := srv.App.DB.ReadTenant(ctx, acme.Tenant.ID, func(tx pgx.Tx) error {
			return tx.QueryRow(ctx, `SELECT coalesce(string_agg(concat_ws(',', scope_kind, scope_id, measure_id, grain, bucket, dim, n, total), ';'
				ORDER BY scope_kind, scope_id, measure_id, grain, bucket, dim), '') FROM kpi_sums WHERE tenant_id = $1 AND scope_kind IN (0, 1)`,
				acme.Tenant.ID).Scan(&out)
		})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	var before string
	eventually(t, "the roll-ups settle", func() error {
		if pending, err := srv.App.Feed.Drain(ctx, acme.Tenant.ID); err != nil || pending {
			return fmt.Errorf("feed pending: %v", err)
		}
		a := sums()
		if pending, err := srv.App.Feed.Drain(ctx, acme.Tenant.ID); err != nil || pending {
			return fmt.Errorf("feed pending: %v", err)
		}
		if b := sums(); a == "" || a != b {
			return fmt.Errorf("roll-ups moving")
		}
		before = a
		return nil
	})

	admin := privacyClient(srv, protocol, acme.AdminToken)
	exp, err := admin.ExportPersonData(ctx, &rallyev1.ExportPersonDataRequest{UserId: target.ID.String()})
	if err != nil {
		t.Fatal(err)
	}
	doc := exp.Data.AsMap()
	person, _ := doc["person"].(map[string]any)
	if person["display_name"] != name || person["email"] != email || person["crm_id"] != crm || person["hire_date"] != "2024-02-01" {
		t.Fatalf("exported person: %v", person)
	}
	for sec, n := range map[string]int{"teams": 1, "events": 2, "challenges": 1, "ledger": 2, "leaderboard_rows": 1} {
		if rows, _ := doc[sec].([]any); len(rows) < n {
			t.Errorf("section %s has %d rows, want at least %d: %v", sec, len(rows), n, doc[sec])
		}
	}
	if exp.Request.Kind != "export" || exp.Request.SubjectId != target.ID.String() {
		t.Fatalf("export audit entry: %v", exp.Request)
	}

	t.Run("refusals", func(t *testing.T) {
		_, err := privacyClient(srv, protocol, testserver.Token(t, reps[1])).ErasePerson(ctx, &rallyev1.ErasePersonRequest{UserId: target.ID.String(), Reason: "x"})
		wantCode(t, err, connect.CodePermissionDenied)
		_, err = privacyClient(srv, protocol, otherTok).ErasePerson(ctx, &rallyev1.ErasePersonRequest{UserId: target.ID.String(), Reason: "x"})
		wantCode(t, err, connect.CodeNotFound)
		_, err = privacyClient(srv, protocol, otherTok).ExportPersonData(ctx, &rallyev1.ExportPersonDataRequest{UserId: target.ID.String()})
		wantCode(t, err, connect.CodeNotFound)
		list, err := privacyClient(srv, protocol, otherTok).ListPrivacyRequests(ctx, &rallyev1.ListPrivacyRequestsRequest{})
		if err != nil || len(list.Requests) != 0 {
			t.Fatalf("another company's requests: %v, %v", list, err)
		}
		_, err = admin.ErasePerson(ctx, &rallyev1.ErasePersonRequest{UserId: acme.Admin.ID.String(), Reason: "x"})
		wantCode(t, err, connect.CodeFailedPrecondition)
		_, err = admin.ErasePerson(ctx, &rallyev1.ErasePersonRequest{UserId: target.ID.String()})
		wantCode(t, err, connect.CodeInvalidArgument)
	})

	erased, err := admin.ErasePerson(ctx, &rallyev1.ErasePersonRequest{UserId: target.ID.String(), Reason: "Demande du 2 décembre (article 17)"})
	if err != nil {
		t.Fatal(err)
	}
	if erased.Request.Kind != "erasure" || erased.Request.Summary.AsMap()["board_scores"] == nil {
		t.Fatalf("erasure audit entry: %v", erased.Request)
	}
	_, err = admin.ErasePerson(ctx, &rallyev1.ErasePersonRequest{UserId: target.ID.String(), Reason: "again"})
	wantCode(t, err, connect.CodeFailedPrecondition)

	needles := []string{name, email, crm}
	t.Run("no table holds them", func(t *testing.T) {
		err := srv.App.DB.AcrossTenants(ctx, func(tx pgx.Tx) error {
			rows, err := tx.Query(ctx, `SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE'`)
			if err != nil {
				return err
			}
			tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
			if err != nil {
				return err
			}
			if len(tables) < 50 {
				t.Fatalf("only %d tables: %v", len(tables), tables)
			}
			for _, table := range tables {
				for _, n := range needles {
					var hits int
					if err := tx.QueryRow(ctx, `SELECT count(*) FROM `+pgx.Identifier{table}.Sanitize()+` t WHERE strpos(to_jsonb(t)::text, $1) > 0`, n).Scan(&hits); err != nil {
						return fmt.Errorf("%s: %w", table, err)
					}
					if hits > 0 {
						t.Errorf("%d rows of %s still hold %q", hits, table, n)
					}
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})

	t.Run("no RPC returns them", func(t *testing.T) {
		hr := analyticsClient(srv, protocol, acme.AdminToken)
		orgc := orgClient(srv, protocol, acme.AdminToken)
		var answers []proto.Message
		add := func(m proto.Message, err error) {
			t.Helper()
			if err != nil {
				t.Fatal(err)
			}
			answers = append(answers, m)
		}
		add(orgc.GetUser(ctx, &rallyev1.GetUserRequest{UserId: target.ID.String()}))
		add(orgc.ListUsers(ctx, &rallyev1.ListUsersRequest{PageSize: 500}))
		add(boards.GetRanking(ctx, &rallyev1.GetRankingRequest{BoardId: board, PageSize: 50}))
		add(hr.GetParticipation(ctx, &rallyev1.GetParticipationRequest{ChallengeIds: []string{created.Challenge.Id}, IncludePeople: true}))
		add(eventClient(srv, protocol, acme.AdminToken).ListEvents(ctx, &rallyev1.ListEventsRequest{PageSize: 500}))
		add(rewardClient(srv, protocol, acme.AdminToken).ListWalletEntries(ctx, &rallyev1.ListWalletEntriesRequest{UserId: target.ID.String()}))
		add(admin.ExportPersonData(ctx, &rallyev1.ExportPersonDataRequest{UserId: target.ID.String()}))
		add(admin.ListPrivacyRequests(ctx, &rallyev1.ListPrivacyRequestsRequest{SubjectId: target.ID.String()}))
		grants, err := readExport(exportClient(srv, protocol, acme.AdminToken).ExportGrants(ctx, &rallyev1.ExportGrantsRequest{
			StartTime: timestamppb.New(now.Add(-time.Hour)), EndTime: timestamppb.New(now.Add(time.Hour))}))
		if err != nil {
			t.Fatal(err)
		}
		texts := []string{string(grants)}
		for _, m := range answers {
			b, _ := protojson.Marshal(m)
			texts = append(texts, string(b))
		}
		for i, text := range texts {
			for _, n := range needles {
				if strings.Contains(text, n) {
					t.Errorf("answer %d still holds %q: %.300s", i, n, text)
				}
			}
		}
		// Off the board, live (Redis) and stored.
		rank := answers[2].(*rallyev1.GetRankingResponse)
		for _, e := range rank.Ranking.GetEntries() {
			if e.ParticipantId == target.ID.String() {
				t.Errorf("still on the live board: %v", e)
			}
		}
		if len(rank.Ranking.GetEntries()) != len(reps)-1 {
			t.Errorf("%d on the board, want %d", len(rank.Ranking.GetEntries()), len(reps)-1)
		}
		got := answers[0].(*rallyev1.GetUserResponse).User
		if got.DisplayName != privacy.ErasedName || got.Active {
			t.Errorf("the pseudonym: %v", got)
		}
		list := answers[7].(*rallyev1.ListPrivacyRequestsResponse)
		// Most recent first: the export just above, the erasure, the first
		// export.
		if len(list.Requests) != 3 || list.Requests[1].Kind != "erasure" || list.Requests[1].Reason != "Demande du 2 décembre (article 17)" ||
			list.Requests[1].Id != erased.Request.Id {
			t.Errorf("audit entries: %v", list.Requests)
		}
	})

	t.Run("their token no longer works", func(t *testing.T) {
		_, err := orgClient(srv, protocol, targetTok).GetMe(ctx, &rallyev1.GetMeRequest{})
		if c := connect.CodeOf(err); c != connect.CodeUnauthenticated && c != connect.CodePermissionDenied {
			t.Fatalf("GetMe with the erased person's token: %v", err)
		}
	})

	t.Run("company totals unchanged", func(t *testing.T) {
		if _, err := srv.App.Feed.Drain(ctx, acme.Tenant.ID); err != nil {
			t.Fatal(err)
		}
		if after := sums(); after != before {
			t.Errorf("company and team roll-ups changed:\nbefore %.500s\nafter  %.500s", before, after)
		}
		var amount, detached int64
		err := srv.App.DB.ReadTenant(ctx, acme.Tenant.ID, func(tx pgx.Tx) error {
			return tx.QueryRow(ctx, `SELECT coalesce(sum(v.amount), 0), count(*) FILTER (WHERE e.user_id IS NULL)
				FROM events e JOIN event_versions v ON v.tenant_id = e.tenant_id AND v.id = e.version_id WHERE e.tenant_id = $1`,
				acme.Tenant.ID).Scan(&amount, &detached)
		})
		if err != nil {
			t.Fatal(err)
		}
		if amount != refAmount || detached != 2 {
			t.Errorf("events: amounts %d (reference %d), %d detached (want the erased person's 2)", amount, refAmount, detached)
		}
	})
}
