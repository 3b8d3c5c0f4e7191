package api

import (
	"github.com/rallyehq/rallye/gen/rallye/v1/rallyev1connect"
	"github.com/rallyehq/rallye/internal/rallye"
)

// Role sets used by the rules below.
var (
	anyone = []rallye.Role{rallye.RoleRep, rallye.RoleManager, rallye.RoleHR, rallye.RoleAdmin, rallye.RoleIntegration}
	people = []rallye.Role{rallye.RoleRep, rallye.RoleManager, rallye.RoleHR, rallye.RoleAdmin}
	staff  = []rallye.Role{rallye.RoleManager, rallye.RoleHR, rallye.RoleAdmin, rallye.RoleIntegration}
	setup  = []rallye.Role{rallye.RoleAdmin, rallye.RoleIntegration}
	admins = []rallye.Role{rallye.RoleAdmin}
	// leads launch and change challenges (managers for their own teams).
	leads = []rallye.Role{rallye.RoleManager, rallye.RoleAdmin}
	// overseers follow challenges across teams.
	overseers = []rallye.Role{rallye.RoleManager, rallye.RoleHR, rallye.RoleAdmin}
	// leaders read the company and team dashboards; planners decide
	// action plans.
	leaders  = []rallye.Role{rallye.RoleManager, rallye.RoleHR, rallye.RoleAdmin}
	planners = []rallye.Role{rallye.RoleManager, rallye.RoleAdmin}
)

// rules says, for every procedure, which roles may call it. A procedure
// without a rule is refused (and TestEveryProcedureIsGuarded fails), so a new
// RPC cannot ship unguarded. Finer rules (a manager acts on their own teams,
// a rep on themselves) are the domain's, on top of these.
var rules = map[string][]rallye.Role{
	rallyev1connect.OrganizationServiceGetTenantProcedure:      anyone,
	rallyev1connect.OrganizationServiceUpdateTenantProcedure:   admins,
	rallyev1connect.OrganizationServiceGetMeProcedure:          people,
	rallyev1connect.OrganizationServiceCreateTeamProcedure:     setup,
	rallyev1connect.OrganizationServiceGetTeamProcedure:        anyone,
	rallyev1connect.OrganizationServiceUpdateTeamProcedure:     setup,
	rallyev1connect.OrganizationServiceListTeamsProcedure:      anyone,
	rallyev1connect.OrganizationServiceDeactivateTeamProcedure: setup,
	rallyev1connect.OrganizationServiceCreateUserProcedure:     setup,
	rallyev1connect.OrganizationServiceGetUserProcedure:        staff,
	rallyev1connect.OrganizationServiceUpdateUserProcedure:     setup,
	rallyev1connect.OrganizationServiceListUsersProcedure:      staff,
	rallyev1connect.OrganizationServiceDeactivateUserProcedure: setup,
	rallyev1connect.OrganizationServiceImportUsersProcedure:    setup,

	rallyev1connect.AccessServiceCreateApiKeyProcedure: admins,
	rallyev1connect.AccessServiceListApiKeysProcedure:  admins,
	rallyev1connect.AccessServiceRevokeApiKeyProcedure: admins,

	rallyev1connect.EventServiceIngestEventsProcedure:        setup,
	rallyev1connect.EventServiceListEventsProcedure:          anyone,
	rallyev1connect.EventServiceGetSourceWatermarksProcedure: staff,
	rallyev1connect.EventServiceListParkedEventsProcedure:    admins,

	rallyev1connect.FeedServiceListDeadLettersProcedure: admins,

	rallyev1connect.ChallengeServiceCreateChallengeProcedure:             leads,
	rallyev1connect.ChallengeServiceCreateChallengeFromTemplateProcedure: leads,
	rallyev1connect.ChallengeServiceGetChallengeProcedure:                people,
	rallyev1connect.ChallengeServiceUpdateChallengeProcedure:             leads,
	rallyev1connect.ChallengeServicePublishChallengeProcedure:            leads,
	rallyev1connect.ChallengeServiceExtendChallengeProcedure:             leads,
	rallyev1connect.ChallengeServiceEndChallengeProcedure:                leads,
	rallyev1connect.ChallengeServiceCancelChallengeProcedure:             leads,
	rallyev1connect.ChallengeServiceJoinChallengeProcedure:               people,
	rallyev1connect.ChallengeServiceSetParticipantTargetProcedure:        leads,
	rallyev1connect.ChallengeServiceListMyChallengesProcedure:            people,
	rallyev1connect.ChallengeServiceListChallengesProcedure:              overseers,
	rallyev1connect.ChallengeServiceGetChallengeStandingsProcedure:       people,
	rallyev1connect.ChallengeServiceListChallengeParticipantsProcedure:   overseers,

	rallyev1connect.ChallengeTemplateServiceListChallengeTemplatesProcedure:  overseers,
	rallyev1connect.ChallengeTemplateServiceGetChallengeTemplateProcedure:    overseers,
	rallyev1connect.ChallengeTemplateServiceUpdateChallengeTemplateProcedure: admins,
	rallyev1connect.ChallengeTemplateServiceResetChallengeTemplateProcedure:  admins,

	rallyev1connect.MissionServiceSubmitMissionProcedure:     people,
	rallyev1connect.MissionServiceApproveSubmissionProcedure: leads,
	rallyev1connect.MissionServiceRejectSubmissionProcedure:  leads,
	rallyev1connect.MissionServiceListSubmissionsProcedure:   people,

	// Which boards a caller sees is the domain's rule (internal/leaderboard).
	rallyev1connect.LeaderboardServiceListBoardsProcedure:   anyone,
	rallyev1connect.LeaderboardServiceGetRankingProcedure:   anyone,
	rallyev1connect.LeaderboardServiceWatchRankingProcedure: anyone,

	rallyev1connect.KpiServiceCreateKpiProcedure:        setup,
	rallyev1connect.KpiServiceUpdateKpiProcedure:        setup,
	rallyev1connect.KpiServiceGetKpiProcedure:           anyone,
	rallyev1connect.KpiServiceListKpisProcedure:         anyone,
	rallyev1connect.KpiServiceArchiveKpiProcedure:       setup,
	rallyev1connect.KpiServiceInstallModelProcedure:     setup,
	rallyev1connect.KpiServiceSetTargetProcedure:        setup,
	rallyev1connect.KpiServiceListTargetsProcedure:      staff,
	rallyev1connect.KpiServiceDeleteTargetProcedure:     setup,
	rallyev1connect.KpiServiceListAlertsProcedure:       people,
	rallyev1connect.KpiServiceAcknowledgeAlertProcedure: people,
	rallyev1connect.KpiServiceCreateActionPlanProcedure: planners,
	rallyev1connect.KpiServiceGetActionPlanProcedure:    people,
	rallyev1connect.KpiServiceListActionPlansProcedure:  people,
	rallyev1connect.KpiServiceRecordLearningsProcedure:  people,

	rallyev1connect.DashboardServiceGetLevel1Procedure: leaders,
	rallyev1connect.DashboardServiceGetLevel2Procedure: leaders,
	rallyev1connect.DashboardServiceGetLevel3Procedure: people,
	rallyev1connect.DashboardServiceWatchProcedure:     people,

	// Whose wallet, streaks and redemptions a caller reads, and whose
	// redemptions a manager decides, is the domain's rule (internal/reward).
	rallyev1connect.RewardServiceGetWalletProcedure:            people,
	rallyev1connect.RewardServiceListWalletEntriesProcedure:    people,
	rallyev1connect.RewardServiceGrantPointsProcedure:          leads,
	rallyev1connect.RewardServiceGetRewardSettingsProcedure:    anyone,
	rallyev1connect.RewardServiceUpdateRewardSettingsProcedure: admins,
	rallyev1connect.RewardServiceGetWorkCalendarProcedure:      anyone,
	rallyev1connect.RewardServiceSetWorkCalendarProcedure:      admins,
	rallyev1connect.RewardServiceListBadgesProcedure:           anyone,
	rallyev1connect.RewardServiceCreateBadgeProcedure:          admins,
	rallyev1connect.RewardServiceUpdateBadgeProcedure:          admins,
	rallyev1connect.RewardServiceListUserBadgesProcedure:       people,
	rallyev1connect.RewardServiceListBadgeHoldersProcedure:     overseers,
	rallyev1connect.RewardServiceListStreakRulesProcedure:      anyone,
	rallyev1connect.RewardServiceCreateStreakRuleProcedure:     admins,
	rallyev1connect.RewardServiceUpdateStreakRuleProcedure:     admins,
	rallyev1connect.RewardServiceGetStreaksProcedure:           people,
	rallyev1connect.RewardServiceUseStreakFreezeProcedure:      people,
	rallyev1connect.RewardServiceSendKudosProcedure:            people,
	rallyev1connect.RewardServiceListTeamFeedProcedure:         people,
	rallyev1connect.RewardServiceCreateRewardItemProcedure:     admins,
	rallyev1connect.RewardServiceUpdateRewardItemProcedure:     admins,
	rallyev1connect.RewardServiceGetRewardItemProcedure:        people,
	rallyev1connect.RewardServiceListRewardItemsProcedure:      people,
	rallyev1connect.RewardServiceRedeemRewardProcedure:         people,
	rallyev1connect.RewardServiceListRedemptionsProcedure:      people,
	rallyev1connect.RewardServiceApproveRedemptionProcedure:    leads,
	rallyev1connect.RewardServiceRejectRedemptionProcedure:     leads,
	rallyev1connect.RewardServiceCancelRedemptionProcedure:     people,
	rallyev1connect.RewardServiceFulfillRedemptionProcedure:    admins,
	rallyev1connect.RewardServiceExportRedemptionsProcedure:    admins,

	// Whose figures a caller reads (reps: their own row; managers: their
	// teams) and which aggregates are withheld is the domain's rule
	// (internal/analytics).
	rallyev1connect.AnalyticsServiceGetParticipationProcedure:        people,
	rallyev1connect.AnalyticsServiceListNonParticipantsProcedure:     overseers,
	rallyev1connect.AnalyticsServiceGetImpactProcedure:               overseers,
	rallyev1connect.AnalyticsServiceGetAnalyticsSettingsProcedure:    overseers,
	rallyev1connect.AnalyticsServiceUpdateAnalyticsSettingsProcedure: admins,

	// The exports read what the analytics and reward reads do, under
	// their rules (reps: their own rows; managers: their teams; groups
	// below the minimum size withheld).
	rallyev1connect.ExportServiceExportParticipationProcedure: people,
	rallyev1connect.ExportServiceExportImpactProcedure:        overseers,
	rallyev1connect.ExportServiceExportGrantsProcedure:        people,

	rallyev1connect.PrivacyServiceExportPersonDataProcedure:    admins,
	rallyev1connect.PrivacyServiceErasePersonProcedure:         admins,
	rallyev1connect.PrivacyServiceListPrivacyRequestsProcedure: admins,
}
