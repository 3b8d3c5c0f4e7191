package challenge

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/rallyehq/rallye/internal/event"
	"github.com/rallyehq/rallye/internal/i18n"
)

// noun is how a count of events of a type reads, in both languages.
type noun struct{ enOne, enMany, frOne, frMany string }

var nouns = map[event.Type]noun{
	event.LeadCreated:             {"lead", "leads", "lead", "leads"},
	event.LeadQualified:           {"qualified lead", "qualified leads", "lead qualifié", "leads qualifiés"},
	event.LeadContacted:           {"lead contacted", "leads contacted", "lead contacté", "leads contactés"},
	event.OpportunityCreated:      {"opportunity", "opportunities", "opportunité", "opportunités"},
	event.OpportunityStageChanged: {"stage moved", "stages moved", "étape franchie", "étapes franchies"},
	event.DealWon:                 {"deal won", "deals won", "affaire gagnée", "affaires gagnées"},
	event.DealLost:                {"deal lost", "deals lost", "affaire perdue", "affaires perdues"},
	event.MeetingScheduled:        {"meeting booked", "meetings booked", "rendez-vous pris", "rendez-vous pris"},
	event.MeetingHeld:             {"meeting", "meetings", "réunion", "réunions"},
	event.MeetingNoShow:           {"no-show", "no-shows", "absence", "absences"},
	event.CallLogged:              {"call", "calls", "appel", "appels"},
	event.QuoteSent:               {"quote", "quotes", "devis", "devis"},
	event.TicketOpened:            {"ticket", "tickets", "ticket", "tickets"},
	event.TicketResolved:          {"ticket resolved", "tickets resolved", "ticket résolu", "tickets résolus"},
	event.CustomerRenewed:         {"renewal", "renewals", "renouvellement", "renouvellements"},
	event.CustomerChurned:         {"churn", "churns", "départ client", "départs clients"},
	event.NPSAnswered:             {"NPS answer", "NPS answers", "réponse NPS", "réponses NPS"},
	event.SatisfactionAnswered:    {"survey answer", "survey answers", "réponse d'enquête", "réponses d'enquête"},
	event.TrainingCompleted:       {"training", "trainings", "formation", "formations"},
	event.ContentUsed:             {"content use", "content uses", "contenu utilisé", "contenus utilisés"},
	event.MarketingSpend:          {"spend", "spends", "dépense", "dépenses"},
}

var genericNoun = noun{"event", "events", "événement", "événements"}

// nounFor names what a mission counts: its event type's noun, or "events"
// when it reads several types.
func nounFor(types []event.Type) noun {
	if len(types) == 1 {
		if n, ok := nouns[types[0]]; ok {
			return n
		}
	}
	if len(types) == 2 && (types[0] == event.MeetingHeld && types[1] == event.MeetingNoShow ||
		types[1] == event.MeetingHeld && types[0] == event.MeetingNoShow) {
		return nouns[event.MeetingHeld]
	}
	if len(types) == 2 && (types[0] == event.DealWon && types[1] == event.DealLost ||
		types[1] == event.DealWon && types[0] == event.DealLost) {
		return noun{"closed deal", "closed deals", "affaire conclue", "affaires conclues"}
	}
	return genericNoun
}

func (n noun) count(k int64, locale string) string {
	switch {
	case locale == "en" && k == 1:
		return "1 more " + n.enOne
	case locale == "en":
		return formatNumber(float64(k), 0, locale) + " more " + n.enMany
	case k == 1:
		return "1 " + n.frOne + " de plus"
	default:
		return formatNumber(float64(k), 0, locale) + " " + n.frMany + " de plus"
	}
}

// formatNumber writes v with at most decimals decimals (trailing zeros
// dropped), grouped by thousands: 1,200.5 in English, 1 200,5 in French.
func formatNumber(v float64, decimals int, locale string) string {
	return groupDigits(v, decimals, locale, true)
}

func groupDigits(v float64, decimals int, locale string, trim bool) string {
	s := strconv.FormatFloat(math.Abs(v), 'f', decimals, 64)
	intPart, frac, _ := strings.Cut(s, ".")
	if trim {
		frac = strings.TrimRight(frac, "0")
	}
	sep, dec := ",", "."
	if locale != "en" {
		sep, dec = "\u202f", "," // narrow no-break space, as French typography wants
	}
	var b strings.Builder
	if v < 0 && s != strings.Repeat("0", len(s)) {
		b.WriteByte('-')
	}
	for i, r := range intPart {
		if i > 0 && (len(intPart)-i)%3 == 0 {
			b.WriteString(sep)
		}
		b.WriteRune(r)
	}
	if frac != "" {
		b.WriteString(dec + frac)
	}
	return b.String()
}

// formatMoney writes an amount in major units with the currency code:
// "1,200 EUR", "1 200 EUR", cents only when there are some.
func formatMoney(v float64, currency, locale string) string {
	decimals := 2
	if math.Abs(v-math.Round(v)) < 0.005 {
		decimals = 0
	}
	return groupDigits(v, decimals, locale, false) + "\u00a0" + currency
}

// formatValue writes a mission value in its unit.
func formatValue(v float64, u Unit, currency, locale string) string {
	switch u {
	case UnitMoney:
		return formatMoney(v, currency, locale)
	case UnitPercent:
		return formatNumber(v, 1, locale) + "\u00a0%"
	case UnitDays:
		d := formatNumber(v, 1, locale)
		switch {
		case locale == "en" && d == "1":
			return "1 day"
		case locale == "en":
			return d + " days"
		case d == "1" || strings.HasPrefix(d, "0"):
			return d + " jour"
		default:
			return d + " jours"
		}
	case UnitCount:
		return formatNumber(v, 0, locale)
	}
	return formatNumber(v, 2, locale)
}

// missingText says, in the reader's locale, what is still missing for the
// subject to complete m ("2 more meetings", "1,200 EUR more"); "" when done.
// lockedBy names the mission to complete first in a sequential challenge.
func missingText(m Mission, p *progress, sub submissionState, lockedBy *Mission, currency, locale string) string {
	en := locale == "en"
	switch {
	case p.Completed:
		return ""
	case lockedBy != nil && (!m.IsManual() && conditionMet(m, p) || m.IsManual() && p.Met):
		if en {
			return fmt.Sprintf("done: counts once %q is completed", lockedBy.Name.In(locale))
		}
		return fmt.Sprintf("atteinte : comptera une fois « %s » terminée", lockedBy.Name.In(locale))
	case lockedBy != nil && m.IsManual():
		if en {
			return fmt.Sprintf("unlocks when %q is completed", lockedBy.Name.In(locale))
		}
		return fmt.Sprintf("se débloque une fois « %s » terminée", lockedBy.Name.In(locale))
	case m.IsManual():
		switch sub {
		case submissionPending:
			if en {
				return "awaiting a manager's approval"
			}
			return "en attente de validation par un manager"
		case submissionRejected:
			if en {
				return "rejected: submit it again"
			}
			return "refusée : à soumettre de nouveau"
		}
		if en {
			return "submit it for approval"
		}
		return "à soumettre pour validation"
	}
	var parts []string
	n := nounFor(m.EventTypes)
	t := p.target(m)
	switch m.Aggregate {
	case AggCount:
		parts = append(parts, n.count(int64(math.Ceil(t-float64(p.Volume)-tolerance)), locale))
	case AggSum:
		gap := t - float64(p.Total)/valueScale
		if m.Unit == UnitMoney {
			if en {
				parts = append(parts, formatMoney(gap, currency, locale)+" more")
			} else {
				parts = append(parts, formatMoney(gap, currency, locale)+" de plus")
			}
		} else if en {
			parts = append(parts, formatValue(gap, m.Unit, currency, locale)+" more")
		} else {
			parts = append(parts, formatValue(gap, m.Unit, currency, locale)+" de plus")
		}
	default:
		if need := max(m.MinVolume, 1) - p.Volume; need > 0 {
			parts = append(parts, n.count(need, locale))
		}
		v, _ := measure(m, p)
		if p.Volume > 0 && !meets(m, v, t) {
			gap := math.Abs(t - v)
			unit := m.Unit
			what := formatValue(gap, unit, currency, locale)
			if unit == UnitPercent {
				if en {
					what = formatNumber(gap, 1, locale) + " percentage points"
				} else {
					what = formatNumber(gap, 1, locale) + " points"
				}
			}
			now := formatValue(v, unit, currency, locale)
			switch {
			case en && m.Comparison == AtMost:
				parts = append(parts, fmt.Sprintf("%s lower (now %s)", what, now))
			case en:
				parts = append(parts, fmt.Sprintf("%s higher (now %s)", what, now))
			case m.Comparison == AtMost:
				parts = append(parts, fmt.Sprintf("%s de moins (%s actuellement)", what, now))
			default:
				parts = append(parts, fmt.Sprintf("%s de plus (%s actuellement)", what, now))
			}
		}
	}
	if en {
		return strings.Join(parts, "; ")
	}
	return strings.Join(parts, " ; ")
}

// ResultText says a participant's final place and rewards in the reader's
// locale: "2nd (tied): +300 points and the 'Podium' badge", "2e ex æquo :
// +300 points et le badge « Podium »". rank 0 (unranked) says the rewards
// alone.
func ResultText(rank int, tied bool, rewards []GrantedReward, locale string) string {
	fr := i18n.Normalize(locale) == i18n.FR
	var parts []string
	for _, r := range rewards {
		label := r.Label.In(locale)
		switch {
		case r.Points > 0 && r.Badge != "" && fr:
			parts = append(parts, i18n.Points(r.Points, true, locale)+" et le badge "+i18n.Quote(label, locale))
		case r.Points > 0 && r.Badge != "":
			parts = append(parts, i18n.Points(r.Points, true, locale)+" and the "+i18n.Quote(label, locale)+" badge")
		case r.Points > 0:
			parts = append(parts, i18n.Points(r.Points, true, locale)+" ("+label+")")
		case fr:
			parts = append(parts, "le badge "+i18n.Quote(label, locale))
		default:
			parts = append(parts, "the "+i18n.Quote(label, locale)+" badge")
		}
	}
	place := ""
	if rank > 0 {
		place = i18n.Ordinal(rank, locale)
		switch {
		case tied && fr:
			place += " ex æquo"
		case tied:
			place += " (tied)"
		}
	}
	switch {
	case place == "":
		return i18n.And(parts, locale)
	case len(parts) == 0:
		return place
	}
	return i18n.Colon(place, locale) + " " + i18n.And(parts, locale)
}
