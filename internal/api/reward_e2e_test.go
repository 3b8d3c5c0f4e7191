package api_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	rallyev1 "github.com/rallyehq/rallye/gen/rallye/v1"
	"github.com/rallyehq/rallye/gen/rallye/v1/rallyev1connect"
	"github.com/rallyehq/rallye/internal/api"
	"github.com/rallyehq/rallye/internal/org"
	"github.com/rallyehq/rallye/internal/rallye"
	"github.com/rallyehq/rallye/internal/testutil/testserver"
)

func rewardClient(srv *testserver.Server, p testserver.Protocol, token string) rallyev1connect.RewardServiceClient {
	return rallyev1connect.NewRewardServiceClient(p.Client, srv.URL,
		append(p.Opts, testserver.Bearer(token), connect.WithInterceptors(streamBearer(token)), recordForeign(token))...)
}

// TestRewardsEndToEnd is the README's scenario over each protocol: a
// manager grants points, the rep reads the wallet, redeems a reward the
// manager approves, an admin fulfils it and exports it as CSV.
func TestRewardsEndToEnd(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t)
	ctx := context.Background()
	for _, proto := range testserver.Protocols() {
		t.Run(proto.Name, func(t *testing.T) {
			co := testserver.NewCompany(t, srv.App.Org)
			team, err := srv.App.Org.CreateTeam(ctx, co.Operator, org.CreateTeamRequest{Name: "Sud"})
			if err != nil {
				t.Fatal(err)
			}
			manager, managerTok := testserver.NewPerson(t, srv.App.Org, co, []rallye.Role{rallye.RoleManager}, team)
			rep, repTok := testserver.NewPerson(t, srv.App.Org, co, []rallye.Role{rallye.RoleRep}, team)
			admin, mgr, me := rewardClient(srv, proto, co.AdminToken), rewardClient(srv, proto, managerTok), rewardClient(srv, proto, repTok)
			stock, value := int32(5), int64(2500)
			item, err := admin.CreateRewardItem(ctx, &rallyev1.CreateRewardItemRequest{Item: &rallyev1.RewardItemSpec{
				Name: &rallyev1.LocalizedText{Fr: "Carte cadeau 25 €", En: "25 EUR gift card"}, Cost: 250, Stock: &stock,
				ApprovalRequired: true, MoneyValue: &value}, RequestId: "card"})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := mgr.GrantPoints(ctx, &rallyev1.GrantPointsRequest{UserId: rep.ID.String(), Points: 300,
				Reason: "Démo client réussie", RequestId: "g1"}); err != nil {
				t.Fatal(err)
			}
			_, err = mgr.GrantPoints(ctx, &rallyev1.GrantPointsRequest{UserId: rep.ID.String(), Points: 300, Reason: ""})
			if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), "reason") {
				t.Fatalf("empty reason: %v", err)
			}
			w, err := me.GetWallet(ctx, &rallyev1.GetWalletRequest{})
			if err != nil {
				t.Fatal(err)
			}
			want := fmt.Sprintf("+300 Attribués par %s\u00a0: Démo client réussie", manager.DisplayName)
			if w.Wallet.Balance.Spendable != 300 || len(w.Wallet.Entries) != 1 || w.Wallet.Entries[0].Text != want ||
				w.Wallet.Level.Number != 2 || w.Wallet.PointsToNextLevel != 450 {
				t.Fatalf("wallet %v", w.Wallet)
			}
			r1, err := me.RedeemReward(ctx, &rallyev1.RedeemRewardRequest{ItemId: item.Item.Id, RequestId: "buy-1"})
			if err != nil {
				t.Fatal(err)
			}
			r2, err := me.RedeemReward(ctx, &rallyev1.RedeemRewardRequest{ItemId: item.Item.Id, RequestId: "buy-1"})
			if err != nil || r2.Redemption.Id != r1.Redemption.Id {
				t.Fatalf("replay: %v %v", r2, err)
			}
			_, err = me.RedeemReward(ctx, &rallyev1.RedeemRewardRequest{ItemId: item.Item.Id, RequestId: "buy-2"})
			if connect.CodeOf(err) != connect.CodeFailedPrecondition {
				t.Fatalf("second redemption with 50 points left: %v", err)
			}
			_, err = me.ApproveRedemption(ctx, &rallyev1.ApproveRedemptionRequest{RedemptionId: r1.Redemption.Id})
			if connect.CodeOf(err) != connect.CodePermissionDenied {
				t.Fatalf("rep approving: %v", err)
			}
			if _, err := mgr.ApproveRedemption(ctx, &rallyev1.ApproveRedemptionRequest{RedemptionId: r1.Redemption.Id, Note: "Bravo"}); err != nil {
				t.Fatal(err)
			}
			f, err := admin.FulfillRedemption(ctx, &rallyev1.FulfillRedemptionRequest{RedemptionId: r1.Redemption.Id, Note: "code envoyé"})
			if err != nil || f.Redemption.State != rallyev1.RedemptionState_REDEMPTION_STATE_FULFILLED {
				t.Fatalf("fulfil: %v %v", f, err)
			}
			from, to := time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
			stream, err := admin.ExportRedemptions(ctx, &rallyev1.ExportRedemptionsRequest{FromTime: timestamppb.New(from), ToTime: timestamppb.New(to)})
			if err != nil {
				t.Fatal(err)
			}
			var rows []*rallyev1.ExportRedemptionsResponse
			for stream.Receive() {
				rows = append(rows, stream.Msg())
			}
			if err := stream.Err(); err != nil || len(rows) != 1 || rows[0].CrmId != rep.ExternalID || rows[0].MoneyValue != 2500 {
				t.Fatalf("export stream %v, %v", rows, err)
			}

			// The CSV, with the same credential.
			url := fmt.Sprintf("%s%s?from=%s&to=%s", srv.URL, api.ExportPath, from.UTC().Format(time.RFC3339), to.UTC().Format(time.RFC3339))
			body, status := get(t, url, co.AdminToken)
			if status != http.StatusOK || !bytes.Contains(body, []byte("\r\n")) {
				t.Fatalf("CSV %d %q", status, body)
			}
			recs, err := csv.NewReader(bytes.NewReader(body)).ReadAll()
			if err != nil {
				t.Fatal(err)
			}
			if len(recs) != 2 || recs[0][2] != "crm_id" || recs[1][2] != rep.ExternalID || recs[1][8] != "25.00" || recs[1][5] != "Carte cadeau 25 €" ||
				recs[1][10] != manager.DisplayName {
				t.Fatalf("CSV rows %q", recs)
			}
			if _, status := get(t, url, managerTok); status != http.StatusForbidden {
				t.Fatalf("a manager exporting: %d", status)
			}
			if _, status := get(t, srv.URL+api.ExportPath+"?from=yesterday", co.AdminToken); status != http.StatusBadRequest {
				t.Fatalf("a bad from: %d", status)
			}
		})
	}
}

func get(t *testing.T, url, token string) ([]byte, int) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return b, res.StatusCode
}
