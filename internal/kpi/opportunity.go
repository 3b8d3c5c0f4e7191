package kpi

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/rallyehq/rallye/internal/event"
)

// RiskAfter is how long an open opportunity may go without activity
// (creation, stage change, quote) before it counts as at risk.
const RiskAfter = 14 * 24 * time.Hour

// Stock KPIs (open opportunities, deals at risk) depend on an opportunity's
// whole history, not on one event. The roll-up consumer keeps, per
// opportunity, its counted events (kpi_opportunities); whenever they change
// it takes back the derived events the old history gave and adds those of
// the new one. derive is a pure function of the set of counted events, so
// the outcome does not depend on the order events arrive in, and the
// backfill job recomputes the same derived events from the stored feed.

type oppKey struct{ source, opp string }

// oppEvent is what the derivation keeps of a counted event.
type oppEvent struct {
	Version uuid.UUID   `json:"v"`
	Type    event.Type  `json:"t"`
	At      time.Time   `json:"at"`
	User    uuid.UUID   `json:"u,omitzero"`
	Teams   []uuid.UUID `json:"tm,omitempty"`
	Segment string      `json:"s,omitempty"`
	Product string      `json:"p,omitempty"`
	Account string      `json:"a,omitempty"`
}

func isOpportunityEvent(e *event.Event) bool {
	if e.OpportunityID == "" {
		return false
	}
	switch e.Type {
	case event.OpportunityCreated, event.OpportunityStageChanged, event.QuoteSent, event.DealWon, event.DealLost:
		return true
	}
	return false
}

func oppEventOf(e *event.Event) oppEvent {
	return oppEvent{Version: e.VersionID, Type: e.Type, At: e.OccurredAt, User: e.UserID, Teams: e.TeamIDs,
		Segment: e.Segment, Product: e.Product, Account: e.AccountID}
}

// derive returns the derived events of one opportunity:
//
//   - pipeline.entered when it was created, pipeline.left when it was first
//     won or lost (only counted closings: a reopened deal's earlier close
//     does not count);
//   - risk.entered RiskAfter after an activity when no other activity (nor
//     the close) followed within RiskAfter, and risk.left at that next
//     activity or close.
//
// An opportunity whose creation does not count derives nothing. Derived
// events carry the creation's rep, teams, segment and product.
func derive(tenantID uuid.UUID, k oppKey, evs []oppEvent) []event.Event {
	evs = slices.Clone(evs)
	slices.SortFunc(evs, func(a, b oppEvent) int {
		if c := a.At.Compare(b.At); c != 0 {
			return c
		}
		return slices.Compare(a.Version[:], b.Version[:])
	})
	created := slices.IndexFunc(evs, func(e oppEvent) bool { return e.Type == event.OpportunityCreated })
	if created < 0 {
		return nil
	}
	c := evs[created]
	mk := func(t event.Type, at time.Time) event.Event {
		return event.Event{TenantID: tenantID, Source: k.source, ExternalID: "derived:" + k.opp, Type: t, OccurredAt: at,
			UserID: c.User, TeamIDs: c.Teams, OpportunityID: k.opp, AccountID: c.Account, Segment: c.Segment, Product: c.Product}
	}
	out := []event.Event{mk(PipelineEntered, c.At)}
	var closedAt time.Time
	for _, e := range evs {
		if e.Type == event.DealWon || e.Type == event.DealLost {
			closedAt = e.At
			break
		}
	}
	closed := !closedAt.IsZero()
	if closed && closedAt.Before(c.At) {
		closedAt = c.At
	}
	if closed {
		out = append(out, mk(PipelineLeft, closedAt))
	}
	var acts []time.Time
	for _, e := range evs {
		switch e.Type {
		case event.OpportunityCreated, event.OpportunityStageChanged, event.QuoteSent:
			if !e.At.Before(c.At) && (!closed || e.At.Before(closedAt)) {
				acts = append(acts, e.At)
			}
		}
	}
	for i, a := range acts {
		riskAt := a.Add(RiskAfter)
		switch {
		case i+1 < len(acts):
			if acts[i+1].After(riskAt) {
				out = append(out, mk(RiskEntered, riskAt), mk(RiskLeft, acts[i+1]))
			}
		case closed:
			if closedAt.After(riskAt) {
				out = append(out, mk(RiskEntered, riskAt), mk(RiskLeft, closedAt))
			}
		default:
			out = append(out, mk(RiskEntered, riskAt))
		}
	}
	return out
}

// applyOpportunities updates the opportunities a batch touches and returns
// the derived changes: -1 for what the old histories derived, +1 for what
// the new ones derive.
func applyOpportunities(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, changes []event.Change) ([]event.Change, error) {
	touched := map[oppKey]bool{}
	var keys []oppKey
	for i := range changes {
		e := &changes[i].Event
		if isOpportunityEvent(e) {
			k := oppKey{e.Source, e.OpportunityID}
			if !touched[k] {
				touched[k] = true
				keys = append(keys, k)
			}
		}
	}
	if len(keys) == 0 {
		return nil, nil
	}
	slices.SortFunc(keys, func(a, b oppKey) int {
		if a.source != b.source {
			if a.source < b.source {
				return -1
			}
			return 1
		}
		if a.opp < b.opp {
			return -1
		}
		if a.opp > b.opp {
			return 1
		}
		return 0
	})
	sources, opps := make([]string, len(keys)), make([]string, len(keys))
	for i, k := range keys {
		sources[i], opps[i] = k.source, k.opp
	}
	old := map[oppKey][]oppEvent{}
	// Primary-key probes (LATERAL, with OFFSET 0 so that the planner keeps
	// it a per-key subquery): a join is planned as a scan of every
	// opportunity of the company.
	rows, err := tx.Query(ctx, `SELECT o.* FROM unnest($2::text[], $3::text[]) AS k(source, opportunity_id)
		CROSS JOIN LATERAL (SELECT source, opportunity_id, events FROM kpi_opportunities
			WHERE tenant_id = $1 AND source = k.source AND opportunity_id = k.opportunity_id OFFSET 0) o`,
		tenantID, sources, opps)
	if err != nil {
		return nil, fmt.Errorf("read opportunities: %w", err)
	}
	for rows.Next() {
		var k oppKey
		var raw []byte
		if err := rows.Scan(&k.source, &k.opp, &raw); err != nil {
			rows.Close()
			return nil, err
		}
		var evs []oppEvent
		if err := json.Unmarshal(raw, &evs); err != nil {
			rows.Close()
			return nil, fmt.Errorf("opportunity %s: %w", k.opp, err)
		}
		old[k] = evs
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}

	current := map[oppKey][]oppEvent{}
	for _, k := range keys {
		current[k] = slices.Clone(old[k])
	}
	for i := range changes {
		e := &changes[i].Event
		if !isOpportunityEvent(e) {
			continue
		}
		k := oppKey{e.Source, e.OpportunityID}
		if changes[i].Sign > 0 {
			current[k] = append(current[k], oppEventOf(e))
		} else {
			current[k] = slices.DeleteFunc(current[k], func(o oppEvent) bool { return o.Version == e.VersionID })
		}
	}

	var derived []event.Change
	var upSources, upOpps, upEvents, delSources, delOpps []string
	for _, k := range keys {
		derived = appendDiff(derived, derive(tenantID, k, old[k]), derive(tenantID, k, current[k]))
		if len(current[k]) == 0 {
			delSources, delOpps = append(delSources, k.source), append(delOpps, k.opp)
			continue
		}
		b, err := json.Marshal(current[k])
		if err != nil {
			return nil, err
		}
		upSources, upOpps, upEvents = append(upSources, k.source), append(upOpps, k.opp), append(upEvents, string(b))
	}
	if len(upSources) > 0 {
		_, err := tx.Exec(ctx, `INSERT INTO kpi_opportunities (tenant_id, source, opportunity_id, events)
			SELECT $1, s, o, e::jsonb FROM unnest($2::text[], $3::text[], $4::text[]) AS u(s, o, e)
			ON CONFLICT (tenant_id, source, opportunity_id) DO UPDATE SET events = excluded.events`,
			tenantID, upSources, upOpps, upEvents)
		if err != nil {
			return nil, fmt.Errorf("write opportunities: %w", err)
		}
	}
	if len(delSources) > 0 {
		_, err := tx.Exec(ctx, `DELETE FROM kpi_opportunities o USING unnest($2::text[], $3::text[]) AS k(source, opportunity_id)
			WHERE o.tenant_id = $1 AND o.source = k.source AND o.opportunity_id = k.opportunity_id`, tenantID, delSources, delOpps)
		if err != nil {
			return nil, fmt.Errorf("delete opportunities: %w", err)
		}
	}
	return derived, nil
}

// derivedKey is what a derived event contributes through: two derived
// events with the same key give every measure the same contribution.
func derivedKey(e event.Event) string {
	return fmt.Sprintf("%s|%d|%s|%v|%s|%s|%s", e.Type, e.OccurredAt.UnixNano(), e.UserID, e.TeamIDs, e.Segment, e.Product, e.AccountID)
}

// appendDiff appends -1 changes for the derived events of old that new
// lacks and +1 changes for those of new that old lacks: most of an
// opportunity's derived events survive a new event unchanged.
func appendDiff(out []event.Change, old, new []event.Event) []event.Change {
	left := map[string]int{}
	for _, e := range old {
		left[derivedKey(e)]++
	}
	for _, e := range new {
		if k := derivedKey(e); left[k] > 0 {
			left[k]--
			continue
		}
		out = append(out, event.Change{Sign: 1, Event: e})
	}
	for _, e := range old {
		if k := derivedKey(e); left[k] > 0 {
			left[k]--
			out = append(out, event.Change{Sign: -1, Event: e})
		}
	}
	return out
}
