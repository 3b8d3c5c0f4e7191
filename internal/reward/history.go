package reward

import (
	"encoding/json"
	"strings"

	"github.com/rallyehq/rallye/internal/challenge"
	"github.com/rallyehq/rallye/internal/i18n"
	"github.com/rallyehq/rallye/internal/leaderboard"
)

// historyLine writes a ledger entry as the wallet shows it, in locale:
//
//	+40 Mission 'Quiz produit' approved by Sophie Martin
//	+40 Mission « Quiz produit » approuvée par Sophie Martin
//
// The amount comes first, signed; the rest reads the entry's cause (the
// challenge's, challenge.Cause, or this package's).
func historyLine(e leaderboard.LedgerEntry, locale string) string {
	return i18n.Signed(e.Points, locale) + " " + describe(e, i18n.Normalize(locale))
}

func describe(e leaderboard.LedgerEntry, l string) string {
	fr := l == i18n.FR
	q := func(s string) string { return i18n.Quote(s, l) }
	switch e.Kind {
	case leaderboard.EntryScoring, leaderboard.EntryMission, leaderboard.EntryCorrection:
		var c challenge.Cause
		_ = json.Unmarshal(e.Cause, &c)
		name := c.Challenge.In(l)
		if name == "" {
			name = "challenge"
		}
		mission := ""
		if c.Mission != nil {
			mission = c.Mission.In(l)
		}
		switch {
		case e.Kind == leaderboard.EntryMission && c.ApprovedBy != "" && fr:
			return "Mission " + q(mission) + " approuvée par " + c.ApprovedBy
		case e.Kind == leaderboard.EntryMission && c.ApprovedBy != "":
			return "Mission " + q(mission) + " approved by " + c.ApprovedBy
		case e.Kind == leaderboard.EntryMission && fr:
			return "Mission " + q(mission) + " accomplie (" + name + ")"
		case e.Kind == leaderboard.EntryMission:
			return "Mission " + q(mission) + " completed (" + name + ")"
		case e.Kind == leaderboard.EntryScoring:
			var rules []string
			for _, r := range c.Rules {
				if t := r.In(l); t != "" {
					rules = append(rules, t)
				}
			}
			what := strings.Join(rules, ", ")
			if what == "" {
				what = map[bool]string{true: "activité CRM", false: "CRM activity"}[fr]
			}
			return i18n.Colon(name, l) + " " + what
		case c.Cancelled && fr:
			return "Challenge " + q(name) + " annulé"
		case c.Cancelled:
			return "Challenge " + q(name) + " cancelled"
		case c.Undo == "mission" && fr:
			return i18n.Colon("Correction", l) + " mission " + q(mission) + " annulée, données CRM corrigées"
		case c.Undo == "mission":
			return i18n.Colon("Correction", l) + " mission " + q(mission) + " undone, CRM data corrected"
		case fr:
			return i18n.Colon("Correction", l) + " événement CRM corrigé (" + name + ")"
		default:
			return i18n.Colon("Correction", l) + " CRM event corrected (" + name + ")"
		}
	}
	var c cause
	_ = json.Unmarshal(e.Cause, &c)
	challengeName, label := "", ""
	if c.Challenge != nil {
		challengeName = c.Challenge.In(l)
	}
	if c.Label != nil {
		label = c.Label.In(l)
	}
	switch e.Kind {
	case leaderboard.EntryRankReward:
		if fr {
			return i18n.Colon("Récompense", l) + " " + i18n.Ordinal(c.Rank, l) + " de " + q(challengeName) + " (" + label + ")"
		}
		return i18n.Colon("Reward", l) + " " + i18n.Ordinal(c.Rank, l) + " in " + q(challengeName) + " (" + label + ")"
	case leaderboard.EntryThresholdReward:
		if fr {
			return i18n.Colon("Récompense", l) + " palier atteint dans " + q(challengeName) + " (" + label + ")"
		}
		return i18n.Colon("Reward", l) + " threshold reached in " + q(challengeName) + " (" + label + ")"
	case leaderboard.EntryManual:
		if fr {
			return i18n.Colon("Attribués par "+c.By, l) + " " + c.Reason
		}
		return i18n.Colon("Granted by "+c.By, l) + " " + c.Reason
	case leaderboard.EntryKudos:
		if fr {
			return i18n.Colon("Kudos de "+c.By, l) + " " + q(c.Reason)
		}
		return i18n.Colon("Kudos from "+c.By, l) + " " + q(c.Reason)
	case leaderboard.EntryRedemption:
		if fr {
			return "Récompense " + q(label) + " commandée"
		}
		return "Reward " + q(label) + " redeemed"
	case leaderboard.EntryRefund:
		switch {
		case c.State == string(RedemptionRejected) && fr:
			return i18n.Colon("Remboursement", l) + " " + q(label) + " refusée par " + c.By
		case c.State == string(RedemptionRejected):
			return i18n.Colon("Refund", l) + " " + q(label) + " rejected by " + c.By
		case fr:
			return i18n.Colon("Remboursement", l) + " " + q(label) + " annulée"
		default:
			return i18n.Colon("Refund", l) + " " + q(label) + " cancelled"
		}
	case leaderboard.EntryAdjustment:
		switch {
		case c.Note == "opening" && fr:
			return "Ajustement d'ouverture du portefeuille"
		case c.Note == "opening":
			return "Wallet opening adjustment"
		case fr:
			return i18n.Colon("Ajustement", l) + " " + q(challengeName) + " ne retire pas plus de points qu'il n'en a donné"
		default:
			return i18n.Colon("Adjustment", l) + " " + q(challengeName) + " takes back no more points than it gave"
		}
	}
	return string(e.Kind)
}
