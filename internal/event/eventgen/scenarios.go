package eventgen

import (
	"fmt"
	"math"
	"time"

	"github.com/rallyehq/rallye/internal/event"
)

func (g *generator) simulateDay(day time.Time) {
	weekend := day.Weekday() == time.Saturday || day.Weekday() == time.Sunday
	g.company(day, weekend)
	if weekend {
		return
	}
	for _, rep := range g.cfg.Reps {
		skill := rep.Skill
		if skill == 0 {
			skill = 1
		}
		g.repDay(day, rep.ExternalID, skill)
	}
}

// company simulates marketing and the support desk, which have no rep.
func (g *generator) company(day time.Time, weekend bool) {
	for _, ch := range channels {
		e := g.base(event.MarketingSpend, day.Add(12*time.Hour), "")
		e.Channel, e.Amount = ch, g.money(400)
		g.emit(e, true)
	}
	if weekend {
		return
	}
	leads := g.poisson(2 + 0.3*float64(len(g.cfg.Reps)))
	for range leads {
		e := g.base(event.LeadCreated, g.at(day), "")
		e.LeadID, e.Channel, e.Segment = g.id("lead"), g.pick(channels), g.pick(segments)
		g.emit(e, false)
		if g.chance(0.35) {
			q := e
			q.Type, q.ExternalID = event.LeadQualified, g.id(string(event.LeadQualified))
			q.OccurredAt = e.OccurredAt.Add(time.Duration(g.rng.Int64N(int64(72 * time.Hour))))
			g.emit(q, false)
		}
	}
	for range g.poisson(0.2 * float64(len(g.cfg.Reps))) {
		account := fmt.Sprintf("acct-%d", g.rng.IntN(40*len(g.cfg.Reps)+1))
		opened := g.base(event.TicketOpened, g.at(day), "")
		opened.AccountID = account
		g.emit(opened, false)
		res := g.base(event.TicketResolved, opened.OccurredAt.Add(time.Duration(1+g.rng.Int64N(int64(96*time.Hour)))), "")
		res.AccountID, res.TicketOpenedAt = account, opened.OccurredAt
		g.emit(res, false)
		if g.chance(0.4) {
			s := int32(1 + g.rng.IntN(5))
			sat := g.base(event.SatisfactionAnswered, res.OccurredAt.Add(time.Hour), "")
			sat.AccountID, sat.Score = account, &s
			g.emit(sat, false)
		}
	}
	for range g.poisson(0.1 * float64(len(g.cfg.Reps))) {
		score := int32(min(10, max(0, int(math.Round(7.5+g.rng.NormFloat64()*2.2)))))
		nps := g.base(event.NPSAnswered, g.at(day), "")
		nps.AccountID, nps.Score = fmt.Sprintf("acct-%d", g.rng.IntN(40*len(g.cfg.Reps)+1)), &score
		g.emit(nps, false)
	}
}

func (g *generator) repDay(day time.Time, rep string, skill float64) {
	for range g.poisson(6 * skill) {
		g.emit(g.base(event.CallLogged, g.at(day), rep), false)
	}
	for range g.poisson(1.5 * skill) {
		sched := g.base(event.MeetingScheduled, g.at(day), rep)
		g.emit(sched, false)
		meet := sched
		meet.ExternalID = g.id("meeting")
		meet.OccurredAt = sched.OccurredAt.Add(time.Duration(1+g.rng.IntN(5)) * 24 * time.Hour)
		if g.chance(0.8) {
			meet.Type, meet.DiscoveryCompleted = event.MeetingHeld, g.chance(0.65)
		} else {
			meet.Type = event.MeetingNoShow
		}
		g.emit(meet, false)
	}
	for range g.poisson(1 * skill) {
		c := g.base(event.LeadContacted, g.at(day), rep)
		c.LeadID = g.id("lead")
		c.LeadCreatedAt = c.OccurredAt.Add(-time.Duration(g.rng.ExpFloat64() * float64(6*time.Hour)))
		g.emit(c, false)
	}
	if g.chance(0.05) {
		t := g.base(event.TrainingCompleted, g.at(day), rep)
		t.ContentID = g.pick([]string{"course-pitch", "course-objections", "course-product"})
		g.emit(t, false)
	}
	for range g.poisson(0.8) {
		c := g.base(event.ContentUsed, g.at(day), rep)
		c.ContentID = g.pick([]string{"deck-2026", "case-study-retail", "roi-calculator"})
		g.emit(c, false)
	}
	for range g.poisson(0.6 * skill) {
		g.opportunity(g.at(day), rep, skill)
	}
	if g.chance(0.04) {
		g.accountLifecycle(g.at(day), rep)
	}
}

// opportunity simulates one opportunity from creation to its close.
func (g *generator) opportunity(created time.Time, rep string, skill float64) {
	opp := g.id("opp")
	segment, product := g.pick(segments), g.pick(products)
	account := fmt.Sprintf("acct-%d", g.rng.IntN(40*len(g.cfg.Reps)+1))
	c := g.base(event.OpportunityCreated, created, rep)
	c.OpportunityID, c.AccountID, c.Segment, c.Product = opp, account, segment, product
	g.emit(c, false)

	entered := created
	cycle := time.Duration(math.Exp(math.Log(18)+g.rng.NormFloat64()*0.6) * float64(24*time.Hour))
	steps := 1 + g.rng.IntN(len(stages)-1)
	for i := range steps {
		moved := entered.Add(cycle / time.Duration(steps+1))
		s := g.base(event.OpportunityStageChanged, moved, rep)
		s.OpportunityID, s.AccountID, s.Segment, s.Product = opp, account, segment, product
		s.FromStage, s.Stage, s.StageEnteredAt = stages[i], stages[i+1], entered
		g.emit(s, false)
		entered = moved
	}
	closeAt := created.Add(cycle)
	amount := g.money(1200 * map[string]float64{"smb": 0.6, "mid-market": 1, "enterprise": 2.2}[segment])
	if g.chance(0.7) {
		q := g.base(event.QuoteSent, closeAt.Add(-time.Duration(g.rng.Int64N(int64(cycle/3)+1))), rep)
		q.OpportunityID, q.AccountID, q.Amount = opp, account, amount
		g.emit(q, true)
	}
	r := g.rng.Float64()
	switch {
	case r < 0.35*skill:
		g.close(event.DealWon, closeAt, rep, opp, account, segment, product, created, amount)
	case r < 0.8:
		g.close(event.DealLost, closeAt, rep, opp, account, segment, product, created, 0)
	} // else still open
}

func (g *generator) dealKind() string {
	r := g.rng.Float64()
	switch {
	case r < 0.6:
		return event.KindNew
	case r < 0.9:
		return event.KindUpsell
	}
	return event.KindRenewal
}

// close closes a deal, sometimes reopening it (delivered in any order) and
// winning it again later.
func (g *generator) close(t event.Type, at time.Time, rep, opp, account, segment, product string, created time.Time, amount int64) {
	e := g.base(t, at, rep)
	e.OpportunityID, e.AccountID, e.Segment, e.Product, e.OpportunityCreatedAt = opp, account, segment, product, created
	if t == event.DealWon {
		e.Amount, e.GrossMargin, e.DealKind = amount, amount*int64(25+g.rng.IntN(40))/100, g.dealKind()
	}
	if !g.chance(g.cfg.ReopenRate) || !at.Add(48*time.Hour).Before(g.cfg.End) {
		g.emit(e, t == event.DealWon)
		return
	}
	// Reopened: the first close never counts; the reopening does. Neither
	// gets noise, which could move or withdraw the reopening and revive the
	// close.
	g.send(at, e, t == event.DealWon)
	reopen := g.base(event.DealReopened, at.Add(time.Minute+time.Duration(g.rng.Int64N(int64(24*time.Hour)))), "")
	reopen.OpportunityID, reopen.AccountID = opp, account
	deliverAt := reopen.OccurredAt
	if g.chance(0.3) {
		deliverAt = at.Add(-time.Hour) // the reopening reaches us before the close
	}
	truncate(&reopen)
	g.send(deliverAt, reopen, false)
	g.truth(reopen)
	if g.chance(0.5) {
		again := e
		again.Type, again.ExternalID = event.DealWon, g.id("won-again")
		again.OccurredAt = reopen.OccurredAt.Add(time.Minute + time.Duration(g.rng.Int64N(int64(24*time.Hour))))
		again.Amount = g.money(1200)
		again.GrossMargin, again.DealKind = again.Amount*30/100, g.dealKind()
		g.emit(again, true)
	}
}

// accountLifecycle renews or loses a customer.
func (g *generator) accountLifecycle(at time.Time, rep string) {
	account := fmt.Sprintf("acct-%d", g.rng.IntN(40*len(g.cfg.Reps)+1))
	if g.chance(0.8) {
		e := g.base(event.CustomerRenewed, at, rep)
		e.AccountID, e.Amount = account, g.money(2000)
		e.GrossMargin = e.Amount * 40 / 100
		g.emit(e, true)
		return
	}
	e := g.base(event.CustomerChurned, at, rep)
	e.AccountID, e.Amount = account, g.money(1500)
	g.emit(e, true)
}
