package api_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	rallyev1 "github.com/rallyehq/rallye/gen/rallye/v1"
	"github.com/rallyehq/rallye/internal/org"
	"github.com/rallyehq/rallye/internal/rallye"
	"github.com/rallyehq/rallye/internal/testutil/testserver"
)

// TestRewardRPCsOtherTenant calls every RewardService procedure with
// another company's admin token on this company's people, items, badges,
// rules and redemptions: ids are NotFound, lists and settings show nothing
// of this company. A procedure without a case fails the test.
func TestRewardRPCsOtherTenant(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t)
	ctx := context.Background()
	acme := testserver.NewCompany(t, srv.App.Org)
	globex := testserver.NewCompany(t, srv.App.Org)
	team, err := srv.App.Org.CreateTeam(ctx, acme.Operator, org.CreateTeamRequest{Name: "Nord"})
	if err != nil {
		t.Fatal(err)
	}
	_, managerTok := testserver.NewPerson(t, srv.App.Org, acme, []rallye.Role{rallye.RoleManager}, team)
	rep, repTok := testserver.NewPerson(t, srv.App.Org, acme, []rallye.Role{rallye.RoleRep}, team)
	proto := testserver.Protocols()[0]
	mine, mgr, me := rewardClient(srv, proto, acme.AdminToken), rewardClient(srv, proto, managerTok), rewardClient(srv, proto, repTok)

	item, err := mine.CreateRewardItem(ctx, &rallyev1.CreateRewardItemRequest{Item: &rallyev1.RewardItemSpec{
		Name: &rallyev1.LocalizedText{Fr: "Acme mug", En: "Acme mug"}, Cost: 10, ApprovalRequired: true}})
	if err != nil {
		t.Fatal(err)
	}
	badge, err := mine.CreateBadge(ctx, &rallyev1.CreateBadgeRequest{Badge: &rallyev1.BadgeSpec{Key: "acme-only",
		Name:      &rallyev1.LocalizedText{Fr: "Acme", En: "Acme"},
		Criterion: &rallyev1.BadgeCriterion{Kind: rallyev1.BadgeCriterionKind_BADGE_CRITERION_KIND_MISSIONS_COMPLETED, Threshold: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	rule, err := mine.CreateStreakRule(ctx, &rallyev1.CreateStreakRuleRequest{Rule: &rallyev1.StreakRuleSpec{Key: "acme-calls",
		Name: &rallyev1.LocalizedText{Fr: "Appels", En: "Calls"}, EventTypes: []string{"call.logged"}, MinCount: 1,
		Period: rallyev1.StreakPeriod_STREAK_PERIOD_DAY, FreezeEveryWeeks: 1}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mgr.GrantPoints(ctx, &rallyev1.GrantPointsRequest{UserId: rep.ID.String(), Points: 100, Reason: "bienvenue"}); err != nil {
		t.Fatal(err)
	}
	redemption, err := me.RedeemReward(ctx, &rallyev1.RedeemRewardRequest{ItemId: item.Item.Id})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mine.UpdateRewardSettings(ctx, &rallyev1.UpdateRewardSettingsRequest{Settings: &rallyev1.RewardSettings{KudosAllowance: 7},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"kudos_allowance"}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := mine.SetWorkCalendar(ctx, &rallyev1.SetWorkCalendarRequest{Year: 2026, WeekendDays: []int32{6, 7},
		Holidays: []*rallyev1.Holiday{{Date: "2026-05-01", Name: "Fête du travail"}}}); err != nil {
		t.Fatal(err)
	}

	other := rewardClient(srv, proto, foreign(globex.AdminToken))
	notFound := func(_ any, err error) error {
		if connect.CodeOf(err) != connect.CodeNotFound {
			return fmt.Errorf("got %v (%v), want not_found", connect.CodeOf(err), err)
		}
		return nil
	}
	name := &rallyev1.LocalizedText{Fr: "x", En: "x"}
	id := redemption.Redemption.Id
	cases := map[string]func() error{
		"GetWallet": func() error {
			return notFound(other.GetWallet(ctx, &rallyev1.GetWalletRequest{UserId: rep.ID.String()}))
		},
		"ListWalletEntries": func() error {
			return notFound(other.ListWalletEntries(ctx, &rallyev1.ListWalletEntriesRequest{UserId: rep.ID.String()}))
		},
		"GrantPoints": func() error {
			return notFound(other.GrantPoints(ctx, &rallyev1.GrantPointsRequest{UserId: rep.ID.String(), Points: 1, Reason: "vol"}))
		},
		"GetRewardSettings": func() error {
			res, err := other.GetRewardSettings(ctx, &rallyev1.GetRewardSettingsRequest{})
			if err != nil || res.Settings.KudosAllowance == 7 {
				return fmt.Errorf("%v, %v: another company's settings", res, err)
			}
			return nil
		},
		"UpdateRewardSettings": func() error {
			_, err := other.UpdateRewardSettings(ctx, &rallyev1.UpdateRewardSettingsRequest{Settings: &rallyev1.RewardSettings{KudosAllowance: 9},
				UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"kudos_allowance"}}})
			mineNow, err2 := mine.GetRewardSettings(ctx, &rallyev1.GetRewardSettingsRequest{})
			if err != nil || err2 != nil || mineNow.Settings.KudosAllowance != 7 {
				return fmt.Errorf("%v %v: acme's allowance is now %d", err, err2, mineNow.GetSettings().GetKudosAllowance())
			}
			return nil
		},
		"GetWorkCalendar": func() error {
			res, err := other.GetWorkCalendar(ctx, &rallyev1.GetWorkCalendarRequest{Year: 2026})
			if err != nil || len(res.Holidays) != 0 {
				return fmt.Errorf("%v, %v: another company's holidays", res, err)
			}
			return nil
		},
		"SetWorkCalendar": func() error {
			_, err := other.SetWorkCalendar(ctx, &rallyev1.SetWorkCalendarRequest{Year: 2026, WeekendDays: []int32{7}})
			mineNow, err2 := mine.GetWorkCalendar(ctx, &rallyev1.GetWorkCalendarRequest{Year: 2026})
			if err != nil || err2 != nil || len(mineNow.Holidays) != 1 || len(mineNow.WeekendDays) != 2 {
				return fmt.Errorf("%v %v: acme's calendar is now %v", err, err2, mineNow)
			}
			return nil
		},
		"ListBadges": func() error {
			res, err := other.ListBadges(ctx, &rallyev1.ListBadgesRequest{IncludeInactive: true})
			if err != nil || slices.ContainsFunc(res.Badges, func(b *rallyev1.Badge) bool { return b.Id == badge.Badge.Id }) {
				return fmt.Errorf("%v: another company's badge listed", err)
			}
			return nil
		},
		"CreateBadge": func() error {
			res, err := other.CreateBadge(ctx, &rallyev1.CreateBadgeRequest{Badge: &rallyev1.BadgeSpec{Key: "acme-only", Name: name,
				Criterion: &rallyev1.BadgeCriterion{Kind: rallyev1.BadgeCriterionKind_BADGE_CRITERION_KIND_LEVEL, Threshold: 2}}})
			if err != nil || res.Badge.Id == badge.Badge.Id {
				return fmt.Errorf("%v: a key is per company", err)
			}
			return nil
		},
		"UpdateBadge": func() error {
			return notFound(other.UpdateBadge(ctx, &rallyev1.UpdateBadgeRequest{BadgeId: badge.Badge.Id,
				Badge: &rallyev1.BadgeSpec{Name: name}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"name"}}}))
		},
		"ListUserBadges": func() error {
			return notFound(other.ListUserBadges(ctx, &rallyev1.ListUserBadgesRequest{UserId: rep.ID.String()}))
		},
		"ListBadgeHolders": func() error {
			return notFound(other.ListBadgeHolders(ctx, &rallyev1.ListBadgeHoldersRequest{BadgeId: badge.Badge.Id}))
		},
		"ListStreakRules": func() error {
			res, err := other.ListStreakRules(ctx, &rallyev1.ListStreakRulesRequest{})
			if err != nil || slices.ContainsFunc(res.Rules, func(r *rallyev1.StreakRule) bool { return r.Id == rule.Rule.Id }) {
				return fmt.Errorf("%v, %v: another company's rules", res, err)
			}
			return nil
		},
		"CreateStreakRule": func() error {
			_, err := other.CreateStreakRule(ctx, &rallyev1.CreateStreakRuleRequest{Rule: &rallyev1.StreakRuleSpec{Key: "acme-calls", Name: name,
				EventTypes: []string{"call.logged"}, MinCount: 2, Period: rallyev1.StreakPeriod_STREAK_PERIOD_WEEK}})
			return err
		},
		"UpdateStreakRule": func() error {
			return notFound(other.UpdateStreakRule(ctx, &rallyev1.UpdateStreakRuleRequest{RuleId: rule.Rule.Id,
				Rule: &rallyev1.StreakRuleSpec{MinCount: 3}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"min_count"}}}))
		},
		"GetStreaks": func() error {
			return notFound(other.GetStreaks(ctx, &rallyev1.GetStreaksRequest{UserId: rep.ID.String()}))
		},
		"UseStreakFreeze": func() error {
			return notFound(other.UseStreakFreeze(ctx, &rallyev1.UseStreakFreezeRequest{RuleId: rule.Rule.Id,
				Day: time.Now().AddDate(0, 0, -1).Format(time.DateOnly)}))
		},
		"SendKudos": func() error {
			return notFound(other.SendKudos(ctx, &rallyev1.SendKudosRequest{RecipientId: rep.ID.String(), Message: "salut"}))
		},
		"ListTeamFeed": func() error {
			return notFound(other.ListTeamFeed(ctx, &rallyev1.ListTeamFeedRequest{TeamId: team.ID.String()}))
		},
		"CreateRewardItem": func() error {
			return notFound(other.CreateRewardItem(ctx, &rallyev1.CreateRewardItemRequest{Item: &rallyev1.RewardItemSpec{Name: name, Cost: 1,
				TeamIds: []string{team.ID.String()}}}))
		},
		"UpdateRewardItem": func() error {
			return notFound(other.UpdateRewardItem(ctx, &rallyev1.UpdateRewardItemRequest{ItemId: item.Item.Id,
				Item: &rallyev1.RewardItemSpec{Cost: 1}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"cost"}}}))
		},
		"GetRewardItem": func() error {
			return notFound(other.GetRewardItem(ctx, &rallyev1.GetRewardItemRequest{ItemId: item.Item.Id}))
		},
		"ListRewardItems": func() error {
			res, err := other.ListRewardItems(ctx, &rallyev1.ListRewardItemsRequest{IncludeArchived: true})
			if err != nil || len(res.Items) != 0 {
				return fmt.Errorf("%v, %v: another company's items", res, err)
			}
			return nil
		},
		"RedeemReward": func() error {
			return notFound(other.RedeemReward(ctx, &rallyev1.RedeemRewardRequest{ItemId: item.Item.Id}))
		},
		"ListRedemptions": func() error {
			res, err := other.ListRedemptions(ctx, &rallyev1.ListRedemptionsRequest{})
			if err != nil || len(res.Redemptions) != 0 {
				return fmt.Errorf("%v, %v: another company's redemptions", res, err)
			}
			return notFound(other.ListRedemptions(ctx, &rallyev1.ListRedemptionsRequest{UserId: rep.ID.String()}))
		},
		"ApproveRedemption": func() error {
			return notFound(other.ApproveRedemption(ctx, &rallyev1.ApproveRedemptionRequest{RedemptionId: id}))
		},
		"RejectRedemption": func() error {
			return notFound(other.RejectRedemption(ctx, &rallyev1.RejectRedemptionRequest{RedemptionId: id}))
		},
		"CancelRedemption": func() error {
			return notFound(other.CancelRedemption(ctx, &rallyev1.CancelRedemptionRequest{RedemptionId: id}))
		},
		"FulfillRedemption": func() error {
			return notFound(other.FulfillRedemption(ctx, &rallyev1.FulfillRedemptionRequest{RedemptionId: id}))
		},
		"ExportRedemptions": func() error {
			if _, err := mine.ApproveRedemption(ctx, &rallyev1.ApproveRedemptionRequest{RedemptionId: id}); err != nil {
				return err
			}
			if _, err := mine.FulfillRedemption(ctx, &rallyev1.FulfillRedemptionRequest{RedemptionId: id}); err != nil {
				return err
			}
			stream, err := other.ExportRedemptions(ctx, &rallyev1.ExportRedemptionsRequest{FromTime: timestamppb.New(time.Now().Add(-time.Hour)),
				ToTime: timestamppb.New(time.Now().Add(time.Hour))})
			if err != nil {
				return err
			}
			n := 0
			for stream.Receive() {
				n++
			}
			if stream.Err() != nil || n != 0 {
				return fmt.Errorf("%d rows, %v: another company's redemptions", n, stream.Err())
			}
			return nil
		},
	}
	// ExportRedemptions fulfils acme's redemption: run it last.
	var names []string
	for n := range cases {
		if n != "ExportRedemptions" {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	names = append(names, "ExportRedemptions")
	for _, n := range names {
		t.Run(n, func(t *testing.T) {
			if err := cases[n](); err != nil {
				t.Fatal(err)
			}
		})
	}
	for _, m := range allProcedures() {
		if string(m.Parent().Name()) != "RewardService" {
			continue
		}
		if _, ok := cases[string(m.Name())]; !ok {
			t.Errorf("no other-tenant case for %s", m.Name())
		}
	}
}
