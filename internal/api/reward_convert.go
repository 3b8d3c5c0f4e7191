package api

import (
	"fmt"
	"time"

	rallyev1 "github.com/rallyehq/rallye/gen/rallye/v1"
	"github.com/rallyehq/rallye/internal/leaderboard"
	"github.com/rallyehq/rallye/internal/reward"
)

func fieldIndex(field string, i int) string { return fmt.Sprintf("%s[%d]", field, i) }

func rtextFromProto(t *rallyev1.LocalizedText) reward.Text {
	return reward.Text{FR: t.GetFr(), EN: t.GetEn()}
}

func rtextToProto(t reward.Text) *rallyev1.LocalizedText {
	return &rallyev1.LocalizedText{Fr: t.FR, En: t.EN}
}

var entryKinds = newEnumMap(map[leaderboard.EntryKind]rallyev1.WalletEntryKind{
	leaderboard.EntryScoring:         rallyev1.WalletEntryKind_WALLET_ENTRY_KIND_SCORING,
	leaderboard.EntryMission:         rallyev1.WalletEntryKind_WALLET_ENTRY_KIND_MISSION,
	leaderboard.EntryCorrection:      rallyev1.WalletEntryKind_WALLET_ENTRY_KIND_CORRECTION,
	leaderboard.EntryRankReward:      rallyev1.WalletEntryKind_WALLET_ENTRY_KIND_RANK_REWARD,
	leaderboard.EntryThresholdReward: rallyev1.WalletEntryKind_WALLET_ENTRY_KIND_THRESHOLD_REWARD,
	leaderboard.EntryManual:          rallyev1.WalletEntryKind_WALLET_ENTRY_KIND_MANUAL,
	leaderboard.EntryKudos:           rallyev1.WalletEntryKind_WALLET_ENTRY_KIND_KUDOS,
	leaderboard.EntryRedemption:      rallyev1.WalletEntryKind_WALLET_ENTRY_KIND_REDEMPTION,
	leaderboard.EntryRefund:          rallyev1.WalletEntryKind_WALLET_ENTRY_KIND_REFUND,
	leaderboard.EntryAdjustment:      rallyev1.WalletEntryKind_WALLET_ENTRY_KIND_ADJUSTMENT,
})

func balanceToProto(b reward.Balance) *rallyev1.Balance {
	return &rallyev1.Balance{Spendable: b.Spendable, Lifetime: b.Lifetime, Pending: b.Pending}
}

func levelToProto(l *reward.Level) *rallyev1.Level {
	if l == nil {
		return nil
	}
	return &rallyev1.Level{Number: int32(l.Number), MinPoints: l.Min, Name: rtextToProto(l.Name)}
}

func walletToProto(w reward.Wallet) *rallyev1.Wallet {
	out := &rallyev1.Wallet{UserId: w.UserID.String(), Balance: balanceToProto(w.Balance), Level: levelToProto(&w.Level),
		NextLevel: levelToProto(w.Next), PointsToNextLevel: w.ToNext, NextPageToken: seqToken(w.NextCursor)}
	for _, e := range w.Entries {
		out.Entries = append(out.Entries, &rallyev1.WalletEntry{Points: e.Points, Kind: entryKinds.toProto[e.Kind], Text: e.Text,
			Pending: e.Pending, ChallengeId: idString(e.ChallengeID), EarnTime: timestamp(e.EarnedAt), RecordTime: timestamp(e.RecordedAt)})
	}
	return out
}

func weekdaysToProto(ds []time.Weekday) []int32 {
	out := make([]int32, 0, len(ds))
	for _, d := range ds {
		n := int32(d)
		if d == time.Sunday {
			n = 7
		}
		out = append(out, n)
	}
	return out
}

func weekdaysFromProto(ns []int32) []time.Weekday {
	out := make([]time.Weekday, 0, len(ns))
	for _, n := range ns {
		out = append(out, time.Weekday(n%7))
	}
	return out
}

func settingsToProto(st reward.Settings) *rallyev1.RewardSettings {
	out := &rallyev1.RewardSettings{PointsPerUnit: int32(st.PointsPerUnit), MaxManualGrant: st.MaxManualGrant,
		KudosAllowance: st.KudosAllowance, WeekendDays: weekdaysToProto(st.Weekend), StreakRiskHour: int32(st.StreakRiskHour)}
	for _, l := range st.Levels {
		out.Levels = append(out.Levels, levelToProto(&l))
	}
	return out
}

func settingsFromProto(in *rallyev1.RewardSettings) reward.Settings {
	st := reward.Settings{PointsPerUnit: int(in.GetPointsPerUnit()), MaxManualGrant: in.GetMaxManualGrant(),
		KudosAllowance: in.GetKudosAllowance(), Weekend: weekdaysFromProto(in.GetWeekendDays()), StreakRiskHour: int(in.GetStreakRiskHour())}
	for i, l := range in.GetLevels() {
		st.Levels = append(st.Levels, reward.Level{Number: i + 1, Min: l.GetMinPoints(), Name: rtextFromProto(l.GetName())})
	}
	return st
}

func calendarToProto(c reward.Calendar) ([]int32, int32, []*rallyev1.Holiday) {
	var hs []*rallyev1.Holiday
	for _, h := range c.Holidays {
		hs = append(hs, &rallyev1.Holiday{Date: formatDay(h.Day), Name: h.Name})
	}
	return weekdaysToProto(c.Weekend), int32(c.Year), hs
}

var (
	criterionKinds = newEnumMap(map[reward.CriterionKind]rallyev1.BadgeCriterionKind{
		reward.CriterionActivity:           rallyev1.BadgeCriterionKind_BADGE_CRITERION_KIND_ACTIVITY,
		reward.CriterionMissions:           rallyev1.BadgeCriterionKind_BADGE_CRITERION_KIND_MISSIONS_COMPLETED,
		reward.CriterionChallengeRank:      rallyev1.BadgeCriterionKind_BADGE_CRITERION_KIND_CHALLENGE_RANK,
		reward.CriterionChallengeCompleted: rallyev1.BadgeCriterionKind_BADGE_CRITERION_KIND_CHALLENGE_COMPLETED,
		reward.CriterionStreak:             rallyev1.BadgeCriterionKind_BADGE_CRITERION_KIND_STREAK,
		reward.CriterionLevel:              rallyev1.BadgeCriterionKind_BADGE_CRITERION_KIND_LEVEL,
		reward.CriterionKudos:              rallyev1.BadgeCriterionKind_BADGE_CRITERION_KIND_KUDOS_RECEIVED,
		reward.CriterionChallengeReward:    rallyev1.BadgeCriterionKind_BADGE_CRITERION_KIND_CHALLENGE_REWARD,
	})
	measures = newEnumMap(map[string]rallyev1.ActivityMeasure{
		"count": rallyev1.ActivityMeasure_ACTIVITY_MEASURE_COUNT, "amount": rallyev1.ActivityMeasure_ACTIVITY_MEASURE_AMOUNT,
	})
	countPeriods = newEnumMap(map[string]rallyev1.CountPeriod{
		"all_time": rallyev1.CountPeriod_COUNT_PERIOD_ALL_TIME, "day": rallyev1.CountPeriod_COUNT_PERIOD_DAY,
		"week": rallyev1.CountPeriod_COUNT_PERIOD_WEEK, "month": rallyev1.CountPeriod_COUNT_PERIOD_MONTH,
		"quarter": rallyev1.CountPeriod_COUNT_PERIOD_QUARTER,
	})
	streakPeriods = newEnumMap(map[reward.StreakPeriod]rallyev1.StreakPeriod{
		reward.StreakDay: rallyev1.StreakPeriod_STREAK_PERIOD_DAY, reward.StreakWeek: rallyev1.StreakPeriod_STREAK_PERIOD_WEEK,
	})
	feedKinds = newEnumMap(map[reward.FeedKind]rallyev1.FeedKind{
		reward.FeedWin: rallyev1.FeedKind_FEED_KIND_WIN, reward.FeedBadge: rallyev1.FeedKind_FEED_KIND_BADGE,
		reward.FeedLevel: rallyev1.FeedKind_FEED_KIND_LEVEL, reward.FeedChallengeResult: rallyev1.FeedKind_FEED_KIND_CHALLENGE_RESULT,
		reward.FeedKudos: rallyev1.FeedKind_FEED_KIND_KUDOS,
	})
	redemptionStates = newEnumMap(map[reward.RedemptionState]rallyev1.RedemptionState{
		reward.RedemptionPending: rallyev1.RedemptionState_REDEMPTION_STATE_PENDING, reward.RedemptionApproved: rallyev1.RedemptionState_REDEMPTION_STATE_APPROVED,
		reward.RedemptionFulfilled: rallyev1.RedemptionState_REDEMPTION_STATE_FULFILLED, reward.RedemptionRejected: rallyev1.RedemptionState_REDEMPTION_STATE_REJECTED,
		reward.RedemptionCancelled: rallyev1.RedemptionState_REDEMPTION_STATE_CANCELLED,
	})
)

func criterionFromProto(c *rallyev1.BadgeCriterion) reward.Criterion {
	return reward.Criterion{Kind: criterionKinds.fromProto[c.GetKind()], EventTypes: c.GetEventTypes(),
		Measure: measures.fromProto[c.GetMeasure()], Period: countPeriods.fromProto[c.GetPeriod()], Threshold: c.GetThreshold(),
		ChallengeKind: c.GetChallengeKind(), MaxRank: int(c.GetMaxRank()), StreakKey: c.GetStreakKey()}
}

func criterionToProto(c reward.Criterion) *rallyev1.BadgeCriterion {
	return &rallyev1.BadgeCriterion{Kind: criterionKinds.toProto[c.Kind], EventTypes: c.EventTypes, Measure: measures.toProto[c.Measure],
		Period: countPeriods.toProto[c.Period], Threshold: c.Threshold, ChallengeKind: c.ChallengeKind, MaxRank: int32(c.MaxRank),
		StreakKey: c.StreakKey}
}

func badgeInputFromProto(in *rallyev1.BadgeSpec) reward.BadgeInput {
	return reward.BadgeInput{Key: in.GetKey(), Name: rtextFromProto(in.GetName()), Description: rtextFromProto(in.GetDescription()),
		IconURL: in.GetIconUrl(), Criterion: criterionFromProto(in.GetCriterion()), Active: in.GetActive()}
}

func badgeToProto(b reward.Badge) *rallyev1.Badge {
	return &rallyev1.Badge{Id: b.ID.String(), Builtin: b.Builtin, Spec: &rallyev1.BadgeSpec{Key: b.Key, Name: rtextToProto(b.Name),
		Description: rtextToProto(b.Description), IconUrl: b.IconURL, Criterion: criterionToProto(b.Criterion), Active: b.Active}}
}

func awardToProto(a reward.Award) *rallyev1.BadgeAward {
	return &rallyev1.BadgeAward{Badge: badgeToProto(a.Badge), UserId: a.UserID.String(), DisplayName: a.Person,
		AwardTime: timestamp(a.AwardedAt), Source: a.Source}
}

func streakRuleInputFromProto(in *rallyev1.StreakRuleSpec) reward.StreakRuleInput {
	return reward.StreakRuleInput{Key: in.GetKey(), Name: rtextFromProto(in.GetName()), EventTypes: in.GetEventTypes(),
		MinCount: int(in.GetMinCount()), Period: streakPeriods.fromProto[in.GetPeriod()], FreezeEveryWeeks: int(in.GetFreezeEveryWeeks()),
		Active: in.GetActive()}
}

func streakRuleToProto(r reward.StreakRule) *rallyev1.StreakRule {
	return &rallyev1.StreakRule{Id: r.ID.String(), Spec: &rallyev1.StreakRuleSpec{Key: r.Key, Name: rtextToProto(r.Name),
		EventTypes: r.EventTypes, MinCount: int32(r.MinCount), Period: streakPeriods.toProto[r.Period],
		FreezeEveryWeeks: int32(r.FreezeEveryWeeks), Active: r.Active}}
}

func streakToProto(s reward.Streak) *rallyev1.Streak {
	out := &rallyev1.Streak{Rule: streakRuleToProto(s.Rule), Current: int32(s.Current), Best: int32(s.Best),
		Period: formatDay(s.Period), Count: int32(s.Count), Met: s.Met, Missing: int32(s.Missing), AtRisk: s.AtRisk,
		FreezeAvailable: s.FreezeAvailable, NextFreeze: formatDay(s.NextFreeze)}
	for _, d := range s.Frozen {
		out.Frozen = append(out.Frozen, formatDay(d))
	}
	return out
}

func itemInputFromProto(in *rallyev1.RewardItemSpec) (reward.ItemInput, error) {
	teams, err := parseIDs("item.team_ids", in.GetTeamIds())
	if err != nil {
		return reward.ItemInput{}, err
	}
	out := reward.ItemInput{Name: rtextFromProto(in.GetName()), Description: rtextFromProto(in.GetDescription()),
		ImageURL: in.GetImageUrl(), Cost: in.GetCost(), PerPersonLimit: int(in.GetPerPersonLimit()),
		ApprovalRequired: in.GetApprovalRequired(), ActiveFrom: timeOf(in.GetActiveFrom()), ActiveUntil: timeOf(in.GetActiveUntil()),
		TeamIDs: teams}
	if in.Stock != nil {
		n := int(in.GetStock())
		out.Stock = &n
	}
	if in.MoneyValue != nil {
		v := in.GetMoneyValue()
		out.MoneyValue = &v
	}
	return out, nil
}

func itemToProto(it reward.Item, now time.Time) *rallyev1.RewardItem {
	spec := &rallyev1.RewardItemSpec{Name: rtextToProto(it.Name), Description: rtextToProto(it.Description), ImageUrl: it.ImageURL,
		Cost: it.Cost, PerPersonLimit: int32(it.PerPersonLimit), ApprovalRequired: it.ApprovalRequired,
		ActiveFrom: timestamp(it.ActiveFrom), ActiveUntil: timestamp(it.ActiveUntil), TeamIds: idStrings(it.TeamIDs),
		MoneyValue: it.MoneyValue, Archived: it.Archived}
	if it.Stock != nil {
		n := int32(*it.Stock)
		spec.Stock = &n
	}
	return &rallyev1.RewardItem{Id: it.ID.String(), Spec: spec, Available: it.Available(now), CreateTime: timestamp(it.CreatedAt),
		UpdateTime: timestamp(it.UpdatedAt)}
}

func redemptionToProto(r reward.Redemption) *rallyev1.Redemption {
	return &rallyev1.Redemption{Id: r.ID.String(), ItemId: r.ItemID.String(), ItemName: rtextToProto(r.Item), UserId: r.UserID.String(),
		DisplayName: r.Person, State: redemptionStates.toProto[r.State], Cost: r.Cost, MoneyValue: r.MoneyValue, Currency: r.Currency,
		RequestTime: timestamp(r.RequestedAt), DecidedBy: idString(r.DecidedBy), DecideTime: timestamp(r.DecidedAt), Note: r.Note,
		FulfillTime: timestamp(r.FulfilledAt)}
}

func feedItemToProto(it reward.FeedItem) *rallyev1.FeedEntry {
	return &rallyev1.FeedEntry{Id: it.ID.String(), Kind: feedKinds.toProto[it.Kind], UserId: it.UserID.String(), DisplayName: it.Person,
		Time: timestamp(it.At), Text: it.Text, Points: it.Points, ChallengeId: idString(it.ChallengeID), BadgeId: idString(it.BadgeID),
		KudosId: idString(it.KudosID)}
}
