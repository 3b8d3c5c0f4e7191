package kpi

import (
	"slices"

	"github.com/rallyehq/rallye/internal/event"
	"github.com/rallyehq/rallye/internal/period"
)

// The ready-to-use model of the seed article ("Modèle de tableau de bord
// prêt à l'emploi"): its strategic objectives are net revenue growth, better
// retention, a lower customer acquisition cost and a faster sales cycle.
// Level 1 holds the strategic KPIs, level 2 details them per segment and
// stage (with the building blocks of the composites), level 3 per person.
//
// Percentages are fractions; money is in major units of the company's
// currency; the formulas are documented in the README.

var (
	monthly    = []period.Kind{period.Month, period.Quarter, period.Year}
	perSegment = []period.Kind{period.Month, period.Quarter}
	personal   = []period.Kind{period.Week, period.Month}
)

func sel(value, filter string, types ...event.Type) Selection {
	return Selection{Types: types, Value: value, Filter: filter}
}

func distinct(f DistinctField, types ...event.Type) Selection {
	return Selection{Types: types, Distinct: f}
}

// activeReps selects the reps who called, met or contacted someone: the
// denominator of the per-rep KPIs (one shared measure).
func activeReps() Selection {
	return distinct(DistinctRep, event.CallLogged, event.MeetingScheduled, event.MeetingHeld, event.MeetingNoShow, event.LeadContacted)
}

func ratio(num, den Selection) Formula {
	return Formula{Aggregation: Ratio, Events: num, Denominator: &den}
}

func def(key string, level int, unit Unit, dir Direction, periods []period.Kind, f Formula, fr, en, descFR, descEN string) Definition {
	return Definition{
		Key: key, Level: level, Unit: unit, Direction: dir, Periods: periods, Formula: f,
		Name: Text{FR: fr, EN: en}, Description: Text{FR: descFR, EN: descEN},
	}
}

// Model returns the seed model's definitions (without owner), every KPI
// after those its composites read.
func Model() []Definition {
	won, lost := event.DealWon, event.DealLost
	renewed, churned := event.CustomerRenewed, event.CustomerChurned
	held, noShow := event.MeetingHeld, event.MeetingNoShow
	return []Definition{
		// Level 1: strategic, company-wide.
		def("net_revenue", 1, UnitMoney, HigherIsBetter, monthly,
			Formula{Aggregation: Sum, Events: sel(`type == "customer.churned" ? -amount : amount`, "", won, renewed, churned)},
			"Chiffre d'affaires net mensuel", "Net monthly revenue",
			"Deals gagnés et renouvellements, moins le chiffre d'affaires perdu par attrition.",
			"Deals won plus renewals, minus the revenue lost to churn."),
		def("conversion_rate", 1, UnitPercent, HigherIsBetter, monthly,
			ratio(sel("", "", won), sel("", "", event.OpportunityCreated)),
			"Taux de conversion global", "Overall conversion rate",
			"Deals gagnés sur la période divisés par les opportunités créées sur la période.",
			"Deals won in the period divided by opportunities created in the period."),
		def("gross_margin", 1, UnitMoney, HigherIsBetter, monthly,
			Formula{Aggregation: Sum, Events: sel("gross_margin", "", won, renewed)},
			"Marge brute", "Gross margin",
			"Marge brute des deals gagnés et des renouvellements.",
			"Gross margin of deals won and renewals."),
		def("renewal_rate", 1, UnitPercent, HigherIsBetter, monthly,
			ratio(sel("", "", renewed), sel("", "", renewed, churned)),
			"Taux de renouvellement", "Renewal rate",
			"Renouvellements divisés par les renouvellements et les attritions de la période.",
			"Renewals divided by renewals and churns of the period."),
		def("nps", 1, UnitScore, HigherIsBetter, monthly,
			Formula{Aggregation: Average, Events: sel(`score >= 9 ? 100.0 : (score <= 6 ? -100.0 : 0.0)`, "", event.NPSAnswered)},
			"NPS", "Net Promoter Score",
			"Pourcentage de promoteurs (9-10) moins pourcentage de détracteurs (0-6), de -100 à 100.",
			"Share of promoters (9-10) minus share of detractors (0-6), from -100 to 100."),
		def("customer_satisfaction", 1, UnitScore, HigherIsBetter, monthly,
			Formula{Aggregation: Average, Events: sel("double(score)", "", event.SatisfactionAnswered)},
			"Satisfaction client (CSAT)", "Customer satisfaction (CSAT)",
			"Note moyenne des enquêtes de satisfaction, de 1 à 5.",
			"Average satisfaction survey score, from 1 to 5."),

		// Level 2: per segment and stage, and the composites' building blocks.
		def("cost_per_lead", 2, UnitMoney, LowerIsBetter, perSegment,
			ratio(sel("amount", "", event.MarketingSpend), sel("", "", event.LeadCreated)),
			"Coût par lead", "Cost per lead",
			"Dépenses marketing divisées par les leads créés.",
			"Marketing spend divided by leads created."),
		def("cost_per_opportunity", 2, UnitMoney, LowerIsBetter, perSegment,
			ratio(sel("amount", "", event.MarketingSpend), sel("", "", event.OpportunityCreated)),
			"Coût par opportunité", "Cost per opportunity",
			"Dépenses marketing divisées par les opportunités créées.",
			"Marketing spend divided by opportunities created."),
		def("mql_to_sql_rate", 2, UnitPercent, HigherIsBetter, perSegment,
			ratio(sel("", "", event.LeadQualified), sel("", "", event.LeadCreated)),
			"Taux de qualification MQL vers SQL", "MQL to SQL rate",
			"Leads qualifiés (SQL) divisés par les leads créés (MQL) de la période.",
			"Leads qualified (SQL) divided by leads created (MQL) in the period."),
		func() Definition {
			d := def("win_rate", 2, UnitPercent, HigherIsBetter, perSegment,
				ratio(sel("", "", won), sel("", "", won, lost)),
				"Taux de victoire par segment", "Win rate by segment",
				"Deals gagnés divisés par les deals conclus (gagnés ou perdus), par segment.",
				"Deals won divided by deals closed (won or lost), per segment.")
			d.Formula.Breakdown = DimSegment
			return d
		}(),
		def("median_stage_days", 2, UnitDays, LowerIsBetter, perSegment,
			Formula{Aggregation: Median, Events: sel("stage_days", "", event.OpportunityStageChanged), Breakdown: DimFromStage},
			"Durée médiane par étape", "Median time per stage",
			"Durée médiane passée dans une étape avant de la quitter, par étape.",
			"Median time spent in a stage before leaving it, per stage."),
		def("average_basket", 2, UnitMoney, HigherIsBetter, perSegment,
			Formula{Aggregation: Average, Events: sel("amount", "", won)},
			"Panier moyen", "Average basket",
			"Montant moyen des deals gagnés.",
			"Average amount of deals won."),
		def("deals_at_risk", 2, UnitCount, LowerIsBetter, perSegment,
			Formula{Aggregation: Balance, Events: sel(`type == "risk.entered" ? 1.0 : -1.0`, "", RiskEntered, RiskLeft)},
			"Deals à risque", "Deals at risk",
			"Opportunités ouvertes sans activité (création, changement d'étape, devis) depuis 14 jours, en fin de période.",
			"Open opportunities without activity (creation, stage change, quote) for 14 days, at the end of the period."),
		def("open_opportunities", 2, UnitCount, HigherIsBetter, perSegment,
			Formula{Aggregation: Balance, Events: sel(`type == "pipeline.entered" ? 1.0 : -1.0`, "", PipelineEntered, PipelineLeft),
				Breakdown: DimSegment},
			"Opportunités ouvertes", "Open opportunities",
			"Opportunités créées et pas encore gagnées ni perdues, en fin de période.",
			"Opportunities created and not yet won or lost, at the end of the period."),
		def("sales_cycle_days", 2, UnitDays, LowerIsBetter, perSegment,
			Formula{Aggregation: Average, Events: sel("cycle_days", "", won)},
			"Durée moyenne du cycle de vente", "Average sales cycle",
			"Jours moyens entre la création de l'opportunité et le gain du deal.",
			"Average days from the opportunity's creation to the deal's win."),
		def("median_closing_days", 2, UnitDays, LowerIsBetter, perSegment,
			Formula{Aggregation: Median, Events: sel("cycle_days", "", won)},
			"Délai médian de closing", "Median closing time",
			"Jours médians entre la création de l'opportunité et le gain du deal.",
			"Median days from the opportunity's creation to the deal's win."),
		def("churn_rate", 2, UnitPercent, LowerIsBetter, perSegment,
			ratio(sel("", "", churned), sel("", "", renewed, churned)),
			"Taux d'attrition", "Churn rate",
			"Attritions divisées par les renouvellements et les attritions de la période.",
			"Churns divided by renewals and churns of the period."),
		def("margin_per_sale", 2, UnitMoney, HigherIsBetter, perSegment,
			Formula{Aggregation: Average, Events: sel("gross_margin", "", won, renewed)},
			"Marge brute par vente", "Gross margin per sale",
			"Marge brute moyenne d'un deal gagné ou d'un renouvellement.",
			"Average gross margin of a deal won or a renewal."),
		def("no_show_rate", 2, UnitPercent, LowerIsBetter, perSegment,
			ratio(sel("", "", noShow), sel("", "", held, noShow)),
			"Taux de no-show", "No-show rate",
			"Rendez-vous manqués divisés par les rendez-vous tenus ou manqués.",
			"Meetings missed divided by meetings held or missed."),
		def("ticket_resolution_hours", 2, UnitHours, LowerIsBetter, perSegment,
			Formula{Aggregation: Median, Events: sel("resolution_hours", "", event.TicketResolved)},
			"Délai médian de résolution des tickets", "Median ticket resolution time",
			"Heures médianes entre l'ouverture et la résolution d'un ticket.",
			"Median hours from a ticket's opening to its resolution."),

		// Level 1 composites, after their inputs.
		def("customer_lifetime_value", 1, UnitMoney, HigherIsBetter, monthly,
			Formula{Aggregation: Composite, Expression: "margin_per_sale / churn_rate"},
			"Valeur vie client", "Customer lifetime value",
			"Marge brute par vente divisée par le taux d'attrition (durée de vie attendue en renouvellements).",
			"Gross margin per sale divided by the churn rate (expected lifetime in renewals)."),
		def("pipeline_velocity", 1, UnitMoney, HigherIsBetter, monthly,
			Formula{Aggregation: Composite, Expression: "open_opportunities * win_rate * average_basket / sales_cycle_days"},
			"Vélocité du pipeline", "Pipeline velocity",
			"Opportunités ouvertes × taux de victoire × panier moyen ÷ durée du cycle : chiffre d'affaires attendu par jour.",
			"Open opportunities × win rate × average basket ÷ cycle days: revenue expected per day."),

		// Level 3: per person.
		def("content_adoption", 3, UnitPercent, HigherIsBetter, personal,
			ratio(distinct(DistinctRep, event.ContentUsed), activeReps()),
			"Adoption des contenus", "Content adoption",
			"Part des commerciaux actifs (appels, rendez-vous, contacts) qui ont utilisé un contenu commercial.",
			"Share of active reps (calls, meetings, contacts) who used a sales asset."),
		def("average_response_hours", 3, UnitHours, LowerIsBetter, personal,
			Formula{Aggregation: Average, Events: sel("response_hours", "", event.LeadContacted)},
			"Temps de réponse moyen", "Average response time",
			"Heures moyennes entre la création d'un lead et son premier contact.",
			"Average hours from a lead's creation to its first contact."),
		def("meetings_per_rep", 3, UnitCount, HigherIsBetter, personal,
			ratio(sel("", "", held), activeReps()),
			"Rendez-vous tenus par commercial", "Meetings held per rep",
			"Rendez-vous tenus divisés par le nombre de commerciaux actifs.",
			"Meetings held divided by the number of active reps."),
		def("discovery_standard_rate", 3, UnitPercent, HigherIsBetter, personal,
			ratio(sel("", "discovery_completed", held), sel("", "", held)),
			"Respect des standards de découverte", "Discovery standard compliance",
			"Part des rendez-vous tenus où la découverte a suivi le standard.",
			"Share of meetings held where discovery followed the standard."),
		def("prospecting_activity", 3, UnitCount, HigherIsBetter, personal,
			Formula{Aggregation: Count, Events: sel("", "", event.CallLogged, event.MeetingScheduled, event.LeadContacted)},
			"Activité de prospection", "Prospecting activity",
			"Appels, rendez-vous planifiés et leads contactés.",
			"Calls, meetings scheduled and leads contacted."),
		def("deals_won", 3, UnitCount, HigherIsBetter, personal,
			Formula{Aggregation: Count, Events: sel("", "", won)},
			"Deals gagnés", "Deals won",
			"Nombre de deals gagnés.",
			"Number of deals won."),
		def("won_revenue", 3, UnitMoney, HigherIsBetter, personal,
			Formula{Aggregation: Sum, Events: sel("amount", "", won)},
			"Chiffre d'affaires signé", "Revenue won",
			"Montant des deals gagnés.",
			"Amount of deals won."),
		def("trainings_completed", 3, UnitCount, HigherIsBetter, personal,
			Formula{Aggregation: Count, Events: sel("", "", event.TrainingCompleted)},
			"Formations suivies", "Trainings completed",
			"Nombre de formations terminées.",
			"Number of trainings completed."),
	}
}

var modelOrder = func() []string {
	var out []string
	for _, d := range Model() {
		out = append(out, d.Key)
	}
	// Dashboards list level 1 in the article's order.
	l1 := []string{"net_revenue", "conversion_rate", "customer_lifetime_value", "gross_margin", "pipeline_velocity",
		"renewal_rate", "nps", "customer_satisfaction"}
	return append(l1, slices.DeleteFunc(out, func(k string) bool { return slices.Contains(l1, k) })...)
}()

// modelRank orders model KPIs as the article lists them, others after.
func modelRank(key string) int {
	if i := slices.Index(modelOrder, key); i >= 0 {
		return i
	}
	return len(modelOrder)
}
