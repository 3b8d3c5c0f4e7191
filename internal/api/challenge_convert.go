package api

import (
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	rallyev1 "github.com/rallyehq/rallye/gen/rallye/v1"
	"github.com/rallyehq/rallye/internal/challenge"
	"github.com/rallyehq/rallye/internal/event"
)

// enumMap pairs domain values with proto enum values (the unspecified
// value maps to the domain's "", its default).
type enumMap[D comparable, P comparable] struct {
	toProto   map[D]P
	fromProto map[P]D
}

func newEnumMap[D comparable, P comparable](pairs map[D]P) enumMap[D, P] {
	m := enumMap[D, P]{toProto: pairs, fromProto: map[P]D{}}
	for d, p := range pairs {
		m.fromProto[p] = d
	}
	return m
}

var (
	kinds = newEnumMap(map[challenge.Kind]rallyev1.ChallengeKind{
		challenge.KindOnboarding: rallyev1.ChallengeKind_CHALLENGE_KIND_ONBOARDING, challenge.KindUpsell: rallyev1.ChallengeKind_CHALLENGE_KIND_UPSELL,
		challenge.KindProspecting: rallyev1.ChallengeKind_CHALLENGE_KIND_PROSPECTING, challenge.KindCustom: rallyev1.ChallengeKind_CHALLENGE_KIND_CUSTOM,
	})
	modes = newEnumMap(map[challenge.Mode]rallyev1.ChallengeMode{
		challenge.ModeIndividual: rallyev1.ChallengeMode_CHALLENGE_MODE_INDIVIDUAL, challenge.ModeTeam: rallyev1.ChallengeMode_CHALLENGE_MODE_TEAM,
	})
	formats = newEnumMap(map[challenge.Format]rallyev1.ChallengeFormat{
		challenge.FormatLeaderboard: rallyev1.ChallengeFormat_CHALLENGE_FORMAT_LEADERBOARD, challenge.FormatRace: rallyev1.ChallengeFormat_CHALLENGE_FORMAT_RACE,
		challenge.FormatTeamBattle: rallyev1.ChallengeFormat_CHALLENGE_FORMAT_TEAM_BATTLE, challenge.FormatDuels: rallyev1.ChallengeFormat_CHALLENGE_FORMAT_DUELS,
		challenge.FormatLeague: rallyev1.ChallengeFormat_CHALLENGE_FORMAT_LEAGUE,
	})
	enrollments = newEnumMap(map[challenge.Enrollment]rallyev1.Enrollment{
		challenge.EnrollAuto: rallyev1.Enrollment_ENROLLMENT_AUTO, challenge.EnrollOptIn: rallyev1.Enrollment_ENROLLMENT_OPT_IN,
	})
	tieRules = newEnumMap(map[challenge.TieRule]rallyev1.ChallengeTieRule{
		challenge.TieEarliestAchiever: rallyev1.ChallengeTieRule_CHALLENGE_TIE_RULE_EARLIEST_ACHIEVER,
		challenge.TieSharedRank:       rallyev1.ChallengeTieRule_CHALLENGE_TIE_RULE_SHARED_RANK,
	})
	teamMetrics = newEnumMap(map[challenge.TeamMetric]rallyev1.TeamMetric{
		challenge.TeamTotal: rallyev1.TeamMetric_TEAM_METRIC_TOTAL, challenge.TeamAverage: rallyev1.TeamMetric_TEAM_METRIC_AVERAGE,
	})
	states = newEnumMap(map[challenge.State]rallyev1.ChallengeState{
		challenge.StateDraft: rallyev1.ChallengeState_CHALLENGE_STATE_DRAFT, challenge.StateScheduled: rallyev1.ChallengeState_CHALLENGE_STATE_SCHEDULED,
		challenge.StateActive: rallyev1.ChallengeState_CHALLENGE_STATE_ACTIVE, challenge.StateEnded: rallyev1.ChallengeState_CHALLENGE_STATE_ENDED,
		challenge.StateCancelled: rallyev1.ChallengeState_CHALLENGE_STATE_CANCELLED,
	})
	scopes = newEnumMap(map[challenge.MissionScope]rallyev1.MissionScope{
		challenge.ScopeIndividual: rallyev1.MissionScope_MISSION_SCOPE_INDIVIDUAL, challenge.ScopeTeam: rallyev1.MissionScope_MISSION_SCOPE_TEAM,
	})
	aggregates = newEnumMap(map[challenge.Aggregate]rallyev1.Aggregate{
		challenge.AggCount: rallyev1.Aggregate_AGGREGATE_COUNT, challenge.AggSum: rallyev1.Aggregate_AGGREGATE_SUM,
		challenge.AggRate: rallyev1.Aggregate_AGGREGATE_RATE, challenge.AggAverage: rallyev1.Aggregate_AGGREGATE_AVERAGE,
		challenge.AggMedian: rallyev1.Aggregate_AGGREGATE_MEDIAN, challenge.AggMin: rallyev1.Aggregate_AGGREGATE_MIN,
		challenge.AggMax: rallyev1.Aggregate_AGGREGATE_MAX,
	})
	comparisons = newEnumMap(map[challenge.Comparison]rallyev1.Comparison{
		challenge.AtLeast: rallyev1.Comparison_COMPARISON_AT_LEAST, challenge.AtMost: rallyev1.Comparison_COMPARISON_AT_MOST,
	})
	units = newEnumMap(map[challenge.Unit]rallyev1.MissionUnit{
		challenge.UnitCount: rallyev1.MissionUnit_MISSION_UNIT_COUNT, challenge.UnitMoney: rallyev1.MissionUnit_MISSION_UNIT_MONEY,
		challenge.UnitPercent: rallyev1.MissionUnit_MISSION_UNIT_PERCENT, challenge.UnitDays: rallyev1.MissionUnit_MISSION_UNIT_DAYS,
		challenge.UnitNumber: rallyev1.MissionUnit_MISSION_UNIT_NUMBER,
	})
	manualKinds = newEnumMap(map[challenge.ManualKind]rallyev1.ManualKind{
		challenge.ManualQuiz: rallyev1.ManualKind_MANUAL_KIND_QUIZ, challenge.ManualTraining: rallyev1.ManualKind_MANUAL_KIND_TRAINING,
		challenge.ManualEvidence: rallyev1.ManualKind_MANUAL_KIND_EVIDENCE,
	})
	rewardKinds = newEnumMap(map[challenge.RewardKind]rallyev1.RewardKind{
		challenge.RewardRank: rallyev1.RewardKind_REWARD_KIND_RANK, challenge.RewardThreshold: rallyev1.RewardKind_REWARD_KIND_THRESHOLD,
	})
	outcomes = newEnumMap(map[challenge.Outcome]rallyev1.DuelOutcome{
		challenge.Leading: rallyev1.DuelOutcome_DUEL_OUTCOME_LEADING, challenge.Trailing: rallyev1.DuelOutcome_DUEL_OUTCOME_TRAILING,
		challenge.Tied: rallyev1.DuelOutcome_DUEL_OUTCOME_TIED, challenge.Won: rallyev1.DuelOutcome_DUEL_OUTCOME_WON,
		challenge.Lost: rallyev1.DuelOutcome_DUEL_OUTCOME_LOST, challenge.Drawn: rallyev1.DuelOutcome_DUEL_OUTCOME_DRAWN,
	})
	submissionStates = newEnumMap(map[string]rallyev1.SubmissionState{
		"pending": rallyev1.SubmissionState_SUBMISSION_STATE_PENDING, "approved": rallyev1.SubmissionState_SUBMISSION_STATE_APPROVED,
		"rejected": rallyev1.SubmissionState_SUBMISSION_STATE_REJECTED,
	})
)

func textFromProto(t *rallyev1.LocalizedText) challenge.Text {
	return challenge.Text{FR: t.GetFr(), EN: t.GetEn()}
}

func textToProto(t challenge.Text) *rallyev1.LocalizedText {
	return &rallyev1.LocalizedText{Fr: t.FR, En: t.EN}
}

func durationFromProto(d interface{ AsDuration() time.Duration }, set bool) challenge.Duration {
	if !set {
		return 0
	}
	return challenge.Duration(d.AsDuration())
}

func durationToProto(d challenge.Duration) *durationpb.Duration {
	if d == 0 {
		return nil
	}
	return durationpb.New(time.Duration(d))
}

func eventTypes(ss []string) []event.Type {
	out := make([]event.Type, len(ss))
	for i, s := range ss {
		out[i] = event.Type(s)
	}
	return out
}

func typeStrings(ts []event.Type) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = string(t)
	}
	return out
}

func definitionFromProto(in *rallyev1.ChallengeDefinition) challenge.Definition {
	d := challenge.Definition{
		Name: textFromProto(in.GetName()), Description: textFromProto(in.GetDescription()),
		Kind: kinds.fromProto[in.GetKind()], Mode: modes.fromProto[in.GetMode()], Format: formats.fromProto[in.GetFormat()],
		Enrollment: enrollments.fromProto[in.GetEnrollment()], Sequential: in.GetSequential(),
		RaceTarget: in.GetRaceTargetPoints(), LeagueTarget: in.GetLeagueTargetPoints(), TeamMetric: teamMetrics.fromProto[in.GetTeamMetric()],
		Duration:    durationFromProto(in.GetDuration(), in.Duration != nil),
		Grace:       durationFromProto(in.GetGracePeriod(), in.GracePeriod != nil),
		MaxDataWait: durationFromProto(in.GetMaxDataWait(), in.MaxDataWait != nil),
		TieRule:     tieRules.fromProto[in.GetTieRule()],
	}
	for _, m := range in.GetMissions() {
		d.Missions = append(d.Missions, missionFromProto(m))
	}
	for _, r := range in.GetScoringRules() {
		d.Rules = append(d.Rules, challenge.Rule{EventTypes: eventTypes(r.GetEventTypes()), Filter: r.GetFilter(), Value: r.GetValue(),
			Per: r.GetPer(), Points: r.GetPoints(), Label: textFromProto(r.GetLabel())})
	}
	for _, r := range in.GetRewards() {
		d.Rewards = append(d.Rewards, challenge.Reward{Kind: rewardKinds.fromProto[r.GetKind()], FromRank: int(r.GetFromRank()),
			ToRank: int(r.GetToRank()), MinPoints: r.GetMinPoints(), Ref: r.GetRewardRef(), Label: textFromProto(r.GetLabel()),
			Points: r.GetPoints(), Badge: r.GetBadge()})
	}
	return d
}

func missionFromProto(in *rallyev1.Mission) challenge.Mission {
	m := challenge.Mission{Key: in.GetKey(), Name: textFromProto(in.GetName()), Description: textFromProto(in.GetDescription()),
		Scope: scopes.fromProto[in.GetScope()], Points: in.GetPoints()}
	if man := in.GetManual(); man != nil {
		m.Manual = manualKinds.fromProto[man.GetKind()]
		if m.Manual == "" {
			m.Manual = "unspecified" // refused by the domain, naming the field
		}
		return m
	}
	a := in.GetAuto()
	m.Aggregate, m.EventTypes, m.Filter, m.Value = aggregates.fromProto[a.GetAggregate()], eventTypes(a.GetEventTypes()), a.GetFilter(), a.GetValue()
	m.HitFilter, m.MinVolume, m.Comparison, m.Target = a.GetHitFilter(), a.GetMinVolume(), comparisons.fromProto[a.GetComparison()], a.GetTarget()
	m.Unit, m.UpliftPercent, m.BaselineDays = units.fromProto[a.GetUnit()], a.GetUpliftPercent(), int(a.GetBaselineDays())
	return m
}

// challengeDefinitionToProto is a stored challenge's definition, which
// always names its tie rule.
func challengeDefinitionToProto(c *challenge.Challenge) *rallyev1.ChallengeDefinition {
	out := definitionToProto(c.Definition, c.Missions)
	out.TieRule = tieRules.toProto[c.Definition.Ties()]
	return out
}

func definitionToProto(d challenge.Definition, missions []challenge.MissionInfo) *rallyev1.ChallengeDefinition {
	out := &rallyev1.ChallengeDefinition{
		Name: textToProto(d.Name), Description: textToProto(d.Description), Kind: kinds.toProto[d.Kind], Mode: modes.toProto[d.Mode],
		Format: formats.toProto[d.Format], Enrollment: enrollments.toProto[d.Enrollment], Sequential: d.Sequential,
		RaceTargetPoints: d.RaceTarget, LeagueTargetPoints: d.LeagueTarget, TeamMetric: teamMetrics.toProto[d.TeamMetric],
		Duration: durationToProto(d.Duration), GracePeriod: durationToProto(d.Grace), MaxDataWait: durationToProto(d.MaxDataWait),
		TieRule: tieRules.toProto[d.TieRule], // a template's empty rule: the default
	}
	if missions == nil {
		for _, m := range d.Missions {
			missions = append(missions, challenge.MissionInfo{Mission: m})
		}
	}
	for _, m := range missions {
		out.Missions = append(out.Missions, missionToProto(m))
	}
	for _, r := range d.Rules {
		out.ScoringRules = append(out.ScoringRules, &rallyev1.ScoringRule{EventTypes: typeStrings(r.EventTypes), Filter: r.Filter,
			Value: r.Value, Per: r.Per, Points: r.Points, Label: textToProto(r.Label)})
	}
	for _, r := range d.Rewards {
		out.Rewards = append(out.Rewards, &rallyev1.RewardRule{Kind: rewardKinds.toProto[r.Kind], FromRank: int32(r.FromRank),
			ToRank: int32(r.ToRank), MinPoints: r.MinPoints, RewardRef: r.Ref, Label: textToProto(r.Label),
			Points: r.Points, Badge: r.Badge})
	}
	return out
}

func missionToProto(m challenge.MissionInfo) *rallyev1.Mission {
	out := &rallyev1.Mission{Id: idString(m.ID), Key: m.Key, Name: textToProto(m.Name), Description: textToProto(m.Description),
		Scope: scopes.toProto[m.Scope], Points: m.Points}
	if m.IsManual() {
		out.Condition = &rallyev1.Mission_Manual{Manual: &rallyev1.ManualCondition{Kind: manualKinds.toProto[m.Manual]}}
		return out
	}
	out.Condition = &rallyev1.Mission_Auto{Auto: &rallyev1.AutoCondition{
		Aggregate: aggregates.toProto[m.Aggregate], EventTypes: typeStrings(m.EventTypes), Filter: m.Filter, Value: m.Value,
		HitFilter: m.HitFilter, MinVolume: m.MinVolume, Comparison: comparisons.toProto[m.Comparison], Target: m.Target,
		Unit: units.toProto[m.Unit], UpliftPercent: m.UpliftPercent, BaselineDays: int32(m.BaselineDays),
	}}
	return out
}

func challengeToProto(c *challenge.Challenge) *rallyev1.Challenge {
	return &rallyev1.Challenge{
		Id: c.ID.String(), Definition: challengeDefinitionToProto(c), TemplateKey: c.TemplateKey,
		State: states.toProto[c.State], Final: c.Final(), TeamIds: idStrings(c.TeamIDs), UserIds: idStrings(c.UserIDs),
		StartTime: timestamp(c.StartsAt), EndTime: timestamp(c.EndsAt), EarliestFinalTime: timestamp(c.EarliestFinal()),
		LatestFinalTime: timestamp(c.LatestFinal()), FinalTime: timestamp(c.FinalizedAt), CancelTime: timestamp(c.CancelledAt),
		CreateTime: timestamp(c.CreatedAt), UpdateTime: timestamp(c.UpdatedAt), PublishTime: timestamp(c.PublishedAt),
		CreatedBy: idString(c.CreatedBy), Version: c.Version, TimeZone: c.TimeZone, Holdout: holdoutToProto(c),
	}
}

func holdoutFromProto(h *rallyev1.HoldoutRequest) *challenge.HoldoutRequest {
	if h == nil {
		return nil
	}
	return &challenge.HoldoutRequest{Share: h.GetShare(), Seed: h.Seed}
}

func holdoutToProto(c *challenge.Challenge) *rallyev1.Holdout {
	if c.HoldoutShare == 0 {
		return nil
	}
	return &rallyev1.Holdout{Share: c.HoldoutShare, Seed: c.HoldoutSeed, Size: int32(len(c.HeldOut))}
}

func duelToProto(d *challenge.Duel, user uuid.UUID) *rallyev1.Duel {
	if d == nil {
		return nil
	}
	if d.B == user {
		return &rallyev1.Duel{UserId: d.B.String(), OpponentId: d.A.String(), Points: d.BPoints, OpponentPoints: d.APoints,
			Outcome: outcomes.toProto[d.BOutcome]}
	}
	return &rallyev1.Duel{UserId: d.A.String(), OpponentId: idString(d.B), Points: d.APoints, OpponentPoints: d.BPoints,
		OpponentAveragePoints: d.BAverage, Outcome: outcomes.toProto[d.AOutcome]}
}

func participationToProto(p *challenge.Participation) *rallyev1.Participation {
	if p == nil {
		return nil
	}
	out := &rallyev1.Participation{
		UserId: p.UserID.String(), TeamId: idString(p.TeamID), Enrolled: p.Enrolled, CountsFrom: timestamp(p.CountsFrom),
		Points: p.Points, Rank: int32(p.Rank), Provisional: p.Provisional, TargetPoints: p.Target, TargetPercent: p.Percent,
		TargetReachTime: timestamp(p.Reached), Duel: duelToProto(p.Duel, p.UserID),
	}
	out.Tied, out.Result = p.Tied, p.Result
	for _, g := range p.Rewards {
		out.Rewards = append(out.Rewards, &rallyev1.GrantedReward{Kind: rewardKinds.toProto[g.Kind], Rank: int32(g.Rank),
			Points: g.Points, Badge: g.Badge, Label: textToProto(g.Label)})
	}
	for _, m := range p.Missions {
		out.Missions = append(out.Missions, &rallyev1.MissionProgress{
			MissionId: m.MissionID.String(), MissionKey: m.Key, Scope: scopes.toProto[m.Scope], SubjectId: idString(m.SubjectID),
			Unit: units.toProto[m.Unit], Current: m.Current, Target: m.Target, Percent: int32(m.Percent), Missing: m.Missing,
			Completed: m.Completed, CompleteTime: timestamp(m.CompletedAt), Locked: m.Locked, Volume: m.Volume,
			MinVolume: m.MinVolume, Points: m.Points, SubmissionState: submissionStates.toProto[m.Submission],
		})
	}
	return out
}

func completenessToProto(c *challenge.Completeness) *rallyev1.DataCompleteness {
	if c == nil {
		return nil
	}
	out := &rallyev1.DataCompleteness{Complete: c.Complete, EarliestFinalTime: timestamp(c.EarliestFinal),
		LatestFinalTime: timestamp(c.LatestFinal)}
	for _, s := range c.Sources {
		out.Sources = append(out.Sources, &rallyev1.SourceCompleteness{Source: s.Source, NewestEventTime: timestamp(s.NewestEvent),
			LastReceiveTime: timestamp(s.LastReceived), ReachedEnd: s.Reached})
	}
	return out
}

func submissionToProto(s challenge.Submission) *rallyev1.MissionSubmission {
	return &rallyev1.MissionSubmission{
		Id: s.ID.String(), ChallengeId: s.ChallengeID.String(), MissionId: s.MissionID.String(), UserId: s.UserID.String(),
		State: submissionStates.toProto[s.State], EvidenceUrl: s.EvidenceURL, Answer: s.Answer, SubmitTime: timestamp(s.SubmittedAt),
		ReviewerId: idString(s.ReviewedBy), ReviewTime: timestamp(s.ReviewedAt), ReviewNote: s.ReviewNote,
	}
}

func templateToProto(t challenge.Template) *rallyev1.ChallengeTemplate {
	out := &rallyev1.ChallengeTemplate{Key: t.Key, Builtin: t.Builtin, Overridden: t.Overridden, UpdateTime: timestamp(t.UpdatedAt)}
	if t.Definition.Name != (challenge.Text{}) {
		out.Definition = definitionToProto(t.Definition, nil)
	}
	return out
}

// timeOf reads an optional timestamp (zero when unset).
func timeOf(t *timestamppb.Timestamp) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.AsTime()
}
