package kpi_test

import (
	"math"
	"slices"
	"sort"
	"time"

	"github.com/google/uuid"

	"github.com/rallyehq/rallye/internal/event"
	"github.com/rallyehq/rallye/internal/kpi"
	"github.com/rallyehq/rallye/internal/period"
)

// oracle computes every seed KPI straight from the generator's ground
// truth, with plain loops, independently of the package's roll-ups: it only
// shares the definitions written in the README.
type oracle struct {
	truth []event.Event
	// userOf maps CRM ids to people; teamsOf a person's teams; below a
	// team's sub-teams (itself included).
	userOf  map[string]uuid.UUID
	teamsOf map[uuid.UUID][]uuid.UUID
	below   map[uuid.UUID][]uuid.UUID
	now     time.Time
	// created is when the company, its teams and people were created.
	created time.Time
}

// existed tells whether s existed in p: p has begun and ends after the
// scope's creation or its first event, whichever is earlier. Counts, sums
// and stocks are 0 there when nothing matched, and have no value elsewhere.
func (o *oracle) existed(s kpi.ScopeRef, p period.Period) bool {
	since := o.created
	for _, e := range o.truth {
		if e.OccurredAt.Before(since) && o.repInScope(o.rep(e), s) {
			since = e.OccurredAt
		}
	}
	return since.Before(p.End) && !p.Start.After(o.now)
}

func (o *oracle) rep(e event.Event) uuid.UUID {
	if e.UserID != uuid.Nil {
		return e.UserID
	}
	return o.userOf[e.RepExternalID]
}

func (o *oracle) repInScope(rep uuid.UUID, s kpi.ScopeRef) bool {
	switch s.Kind {
	case kpi.ScopeCompany:
		return true
	case kpi.ScopePerson:
		return rep != uuid.Nil && rep == s.ID
	}
	for _, t := range o.teamsOf[rep] {
		if slices.Contains(o.below[s.ID], t) {
			return true
		}
	}
	return false
}

// in returns the truth events of the types that occurred in p and count for s.
func (o *oracle) in(s kpi.ScopeRef, p period.Period, types ...event.Type) []event.Event {
	var out []event.Event
	for _, e := range o.truth {
		if slices.Contains(types, e.Type) && p.Contains(e.OccurredAt) && o.repInScope(o.rep(e), s) {
			out = append(out, e)
		}
	}
	return out
}

func money(minor int64) float64 { return float64(minor) / 100 }

func ptr(v float64) *float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil
	}
	return &v
}

func mean(xs []float64) *float64 {
	if len(xs) == 0 {
		return nil
	}
	s := 0.0
	for _, x := range xs {
		s += x
	}
	return ptr(s / float64(len(xs)))
}

func median(xs []float64) *float64 {
	if len(xs) == 0 {
		return nil
	}
	s := slices.Clone(xs)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return ptr(s[len(s)/2])
	}
	return ptr((s[len(s)/2-1] + s[len(s)/2]) / 2)
}

func div(a, b float64) *float64 {
	if b == 0 {
		return nil
	}
	return ptr(a / b)
}

// count is the number of events: 0 where the scope existed, no value
// elsewhere when there are none.
func count(evs []event.Event, existed bool) *float64 {
	if len(evs) == 0 && !existed {
		return nil
	}
	return ptr(float64(len(evs)))
}

// total sums f over the events, like count for an empty list.
func total(evs []event.Event, f func(event.Event) float64, existed bool) *float64 {
	if len(evs) == 0 && !existed {
		return nil
	}
	s := 0.0
	for _, e := range evs {
		s += f(e)
	}
	return &s
}

func values(evs []event.Event, f func(event.Event) float64) []float64 {
	out := make([]float64, len(evs))
	for i, e := range evs {
		out[i] = f(e)
	}
	return out
}

func distinctReps(o *oracle, evs []event.Event) float64 {
	seen := map[uuid.UUID]bool{}
	for _, e := range evs {
		if r := o.rep(e); r != uuid.Nil {
			seen[r] = true
		}
	}
	return float64(len(seen))
}

func amount(e event.Event) float64 { return money(e.Amount) }
func margin(e event.Event) float64 { return money(e.GrossMargin) }
func cycleDays(e event.Event) float64 {
	return e.OccurredAt.Sub(e.OpportunityCreatedAt).Hours() / 24
}

// opportunity is one opportunity's truth, for the stock KPIs.
type opportunity struct {
	created    event.Event
	hasCreated bool
	closedAt   time.Time
	acts       []time.Time
}

func (o *oracle) opportunities() map[[2]string]*opportunity {
	out := map[[2]string]*opportunity{}
	get := func(e event.Event) *opportunity {
		k := [2]string{e.Source, e.OpportunityID}
		if out[k] == nil {
			out[k] = &opportunity{}
		}
		return out[k]
	}
	for _, e := range o.truth {
		switch e.Type {
		case event.OpportunityCreated:
			op := get(e)
			op.created, op.hasCreated = e, true
			op.acts = append(op.acts, e.OccurredAt)
		case event.OpportunityStageChanged, event.QuoteSent:
			op := get(e)
			op.acts = append(op.acts, e.OccurredAt)
		case event.DealWon, event.DealLost:
			op := get(e)
			if op.closedAt.IsZero() || e.OccurredAt.Before(op.closedAt) {
				op.closedAt = e.OccurredAt
			}
		}
	}
	return out
}

// cutoff is the instant a stock is read at for p: its end, or the next
// local midnight for the current period.
func (o *oracle) cutoff(p period.Period) time.Time {
	loc := p.Start.Location()
	y, m, d := o.now.In(loc).Date()
	tomorrow := time.Date(y, m, d+1, 0, 0, 0, 0, loc)
	if tomorrow.Before(p.End) {
		return tomorrow
	}
	return p.End
}

// open counts, per segment, the opportunities of s open at c: created
// before c and not won or lost before c. ever tells whether any was created
// before c (a stock with no history has no value).
func (o *oracle) open(s kpi.ScopeRef, c time.Time) (bySegment map[string]float64, ever map[string]bool) {
	bySegment, ever = map[string]float64{}, map[string]bool{}
	for _, op := range o.opportunities() {
		if !op.hasCreated || !op.created.OccurredAt.Before(c) || !o.repInScope(o.rep(op.created), s) {
			continue
		}
		seg := op.created.Segment
		ever[seg] = true
		if !op.closedAt.IsZero() && op.closedAt.Before(c) {
			continue
		}
		bySegment[seg]++
	}
	return
}

// atRisk counts the opportunities of s at risk at c: open, with their last
// activity (creation, stage change, quote) before c more than RiskAfter
// before c. ever tells whether any opportunity of s went at risk before c.
func (o *oracle) atRisk(s kpi.ScopeRef, c time.Time) (n float64, ever bool) {
	for _, op := range o.opportunities() {
		if !op.hasCreated || !op.created.OccurredAt.Before(c) || !o.repInScope(o.rep(op.created), s) {
			continue
		}
		acts := slices.Clone(op.acts)
		slices.SortFunc(acts, func(a, b time.Time) int { return a.Compare(b) })
		closed := !op.closedAt.IsZero()
		// Went at risk before c at least once: a gap of more than RiskAfter
		// between consecutive activities (or up to the close, or up to c).
		var last time.Time
		for _, a := range acts {
			if a.Before(op.created.OccurredAt) || (closed && !a.Before(op.closedAt)) || !a.Before(c) {
				continue
			}
			if !last.IsZero() && a.Sub(last) > kpi.RiskAfter && last.Add(kpi.RiskAfter).Before(c) {
				ever = true
			}
			last = a
		}
		end := c
		if closed && op.closedAt.Before(c) {
			end = op.closedAt
		}
		if !last.IsZero() && end.Sub(last) > kpi.RiskAfter && last.Add(kpi.RiskAfter).Before(c) {
			ever = true
		}
		if closed && op.closedAt.Before(c) {
			continue
		}
		if !last.IsZero() && last.Add(kpi.RiskAfter).Before(c) {
			n++
		}
	}
	return n, ever
}

type expectation struct {
	value     *float64
	breakdown map[string]*float64
}

// expect computes key for s over p.
func (o *oracle) expect(key string, s kpi.ScopeRef, p period.Period) expectation {
	won, lost := event.DealWon, event.DealLost
	renewed, churned := event.CustomerRenewed, event.CustomerChurned
	held, noShow := event.MeetingHeld, event.MeetingNoShow
	var x expectation
	ex := o.existed(s, p)
	switch key {
	case "net_revenue":
		x.value = total(o.in(s, p, won, renewed, churned), func(e event.Event) float64 {
			if e.Type == churned {
				return -amount(e)
			}
			return amount(e)
		}, ex)
	case "conversion_rate":
		x.value = div(float64(len(o.in(s, p, won))), float64(len(o.in(s, p, event.OpportunityCreated))))
	case "gross_margin":
		x.value = total(o.in(s, p, won, renewed), margin, ex)
	case "renewal_rate":
		x.value = div(float64(len(o.in(s, p, renewed))), float64(len(o.in(s, p, renewed, churned))))
	case "churn_rate":
		x.value = div(float64(len(o.in(s, p, churned))), float64(len(o.in(s, p, renewed, churned))))
	case "nps":
		x.value = mean(values(o.in(s, p, event.NPSAnswered), func(e event.Event) float64 {
			switch {
			case *e.Score >= 9:
				return 100
			case *e.Score <= 6:
				return -100
			}
			return 0
		}))
	case "customer_satisfaction":
		x.value = mean(values(o.in(s, p, event.SatisfactionAnswered), func(e event.Event) float64 { return float64(*e.Score) }))
	case "cost_per_lead", "cost_per_opportunity":
		if s.Kind != kpi.ScopeCompany {
			break // marketing spend is the company's: not applicable below it
		}
		spend := 0.0
		for _, e := range o.in(s, p, event.MarketingSpend) {
			spend += amount(e)
		}
		den := event.LeadCreated
		if key == "cost_per_opportunity" {
			den = event.OpportunityCreated
		}
		x.value = div(spend, float64(len(o.in(s, p, den))))
	case "mql_to_sql_rate":
		x.value = div(float64(len(o.in(s, p, event.LeadQualified))), float64(len(o.in(s, p, event.LeadCreated))))
	case "win_rate":
		closed := o.in(s, p, won, lost)
		w := float64(len(o.in(s, p, won)))
		x.value = div(w, float64(len(closed)))
		x.breakdown = map[string]*float64{}
		bw, bc := map[string]float64{}, map[string]float64{}
		for _, e := range closed {
			bc[e.Segment]++
			if e.Type == won {
				bw[e.Segment]++
			}
		}
		for seg, c := range bc {
			x.breakdown[seg] = div(bw[seg], c)
		}
	case "median_stage_days":
		evs := o.in(s, p, event.OpportunityStageChanged)
		stageDays := func(e event.Event) float64 { return e.OccurredAt.Sub(e.StageEnteredAt).Hours() / 24 }
		x.value = median(values(evs, stageDays))
		x.breakdown = map[string]*float64{}
		by := map[string][]float64{}
		for _, e := range evs {
			by[e.FromStage] = append(by[e.FromStage], stageDays(e))
		}
		for st, vs := range by {
			x.breakdown[st] = median(vs)
		}
	case "average_basket":
		x.value = mean(values(o.in(s, p, won), amount))
	case "margin_per_sale":
		x.value = mean(values(o.in(s, p, won, renewed), margin))
	case "sales_cycle_days":
		x.value = mean(values(o.in(s, p, won), cycleDays))
	case "median_closing_days":
		x.value = median(values(o.in(s, p, won), cycleDays))
	case "no_show_rate":
		x.value = div(float64(len(o.in(s, p, noShow))), float64(len(o.in(s, p, held, noShow))))
	case "ticket_resolution_hours":
		x.value = median(values(o.in(s, p, event.TicketResolved), func(e event.Event) float64 {
			return e.OccurredAt.Sub(e.TicketOpenedAt).Hours()
		}))
	case "open_opportunities":
		by, ever := o.open(s, o.cutoff(p))
		x.breakdown = map[string]*float64{}
		any, sum := false, 0.0
		for seg := range ever {
			any = true
			sum += by[seg]
			x.breakdown[seg] = ptr(by[seg])
		}
		if any || ex {
			x.value = ptr(sum)
		}
	case "deals_at_risk":
		n, ever := o.atRisk(s, o.cutoff(p))
		if ever || ex {
			x.value = ptr(n)
		}
	case "customer_lifetime_value":
		m, c := o.expect("margin_per_sale", s, p).value, o.expect("churn_rate", s, p).value
		if m != nil && c != nil {
			x.value = div(*m, *c)
		}
	case "pipeline_velocity":
		op, w := o.expect("open_opportunities", s, p).value, o.expect("win_rate", s, p).value
		b, c := o.expect("average_basket", s, p).value, o.expect("sales_cycle_days", s, p).value
		if op != nil && w != nil && b != nil && c != nil {
			x.value = ptr(*op * *w * *b / *c)
		}
	case "content_adoption":
		x.value = div(distinctReps(o, o.in(s, p, event.ContentUsed)),
			distinctReps(o, o.in(s, p, event.CallLogged, event.MeetingScheduled, held, noShow, event.LeadContacted)))
	case "average_response_hours":
		x.value = mean(values(o.in(s, p, event.LeadContacted), func(e event.Event) float64 {
			return e.OccurredAt.Sub(e.LeadCreatedAt).Hours()
		}))
	case "meetings_per_rep":
		x.value = div(float64(len(o.in(s, p, held))),
			distinctReps(o, o.in(s, p, event.CallLogged, event.MeetingScheduled, held, noShow, event.LeadContacted)))
	case "discovery_standard_rate":
		ok := 0.0
		hs := o.in(s, p, held)
		for _, e := range hs {
			if e.DiscoveryCompleted {
				ok++
			}
		}
		x.value = div(ok, float64(len(hs)))
	case "prospecting_activity":
		x.value = count(o.in(s, p, event.CallLogged, event.MeetingScheduled, event.LeadContacted), ex)
	case "deals_won":
		x.value = count(o.in(s, p, won), ex)
	case "won_revenue":
		x.value = total(o.in(s, p, won), amount, ex)
	case "trainings_completed":
		x.value = count(o.in(s, p, event.TrainingCompleted), ex)
	default:
		panic("the oracle does not know " + key)
	}
	return x
}
