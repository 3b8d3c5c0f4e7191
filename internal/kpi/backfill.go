package kpi

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/rallyehq/rallye/internal/event"
	"github.com/rallyehq/rallye/internal/rallye"
)

// Backfill computes the company's new measures over the stored history.
//
// A new measure is applied by the roll-up consumer from the feed position
// where the consumer first saw it (applied_from); the backfill adds what
// counted up to that position, replayed from the stored feed
// (event.CountedAt), then marks the measure ready. The two never overlap and
// never leave a gap: the position is fixed under the consumer's lock, and
// the backfill writes in the same transaction that marks the measure ready,
// so running it again changes nothing.
func (s *Service) Backfill(ctx context.Context, tenantID uuid.UUID) error {
	// 1. Fix the starting position of measures the consumer has not seen.
	err := s.db.InTenant(ctx, tenantID, func(tx pgx.Tx) error {
		var fresh bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM kpi_measures
			WHERE tenant_id = $1 AND applied_from_seq IS NULL)`, tenantID).Scan(&fresh); err != nil || !fresh {
			return err
		}
		if err := event.LockConsumer(ctx, tx, tenantID, ConsumerName); err != nil {
			return err
		}
		return startMeasures(ctx, tx, tenantID)
	})
	if err != nil {
		return err
	}
	// 2. Replay, write and mark ready, atomically.
	var done []uuid.UUID
	var ruleErrors []event.RuleError
	err = s.db.InTenant(ctx, tenantID, func(tx pgx.Tx) error {
		done, ruleErrors = nil, nil
		rows, err := tx.Query(ctx, `SELECT id, spec, applied_from_seq FROM kpi_measures
			WHERE tenant_id = $1 AND NOT ready AND applied_from_seq IS NOT NULL ORDER BY id FOR UPDATE`, tenantID)
		if err != nil {
			return fmt.Errorf("read pending measures: %w", err)
		}
		byPos := map[event.Position][]*compiledMeasure{}
		for rows.Next() {
			var id uuid.UUID
			var raw []byte
			var pos event.Position
			if err := rows.Scan(&id, &raw, &pos.Seq); err != nil {
				rows.Close()
				return err
			}
			var spec MeasureSpec
			if err := json.Unmarshal(raw, &spec); err != nil {
				rows.Close()
				return err
			}
			m, err := s.compiler.measure(spec)
			if err != nil {
				rows.Close()
				return err
			}
			byPos[pos] = append(byPos[pos], m)
			done = append(done, id)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if len(done) == 0 {
			return nil
		}
		loc, err := tenantLocation(ctx, tx, tenantID)
		if err != nil {
			return err
		}
		agg := newAggregate(loc)
		for pos, ms := range byPos {
			if err := replay(ctx, tx, tenantID, pos, ms, agg); err != nil {
				return err
			}
		}
		if err := agg.write(ctx, tx, tenantID); err != nil {
			return err
		}
		ruleErrors = agg.ruleErrors
		_, err = tx.Exec(ctx, `UPDATE kpi_measures SET ready = true, ready_at = now() WHERE tenant_id = $1 AND id = ANY($2)`,
			tenantID, done)
		return err
	})
	if err != nil {
		return fmt.Errorf("backfill measures: %w", err)
	}
	if len(done) > 0 {
		s.published(ctx, tenantID, done)
	}
	log := s.log
	if log == nil {
		log = rallye.Logger(ctx)
	}
	for _, re := range ruleErrors {
		log.Warn("rule not evaluated in a backfill; the event is skipped by it", "tenant_id", tenantID,
			"rule", re.Rule, "version_id", re.Event.VersionID, "source", re.Event.Source, "external_id", re.Event.ExternalID,
			"type", re.Event.Type, "error", re.Err)
	}
	return nil
}

// replay adds to agg what the events counted at pos give measures ms,
// derived events included.
func replay(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, pos event.Position, ms []*compiledMeasure, agg *aggregate) error {
	byType := indexByType(ms)
	var types []event.Type
	derivedWanted := false
	for t := range byType {
		if slices.Contains(DerivedTypes, t) {
			derivedWanted = true
			continue
		}
		types = append(types, t)
	}
	if derivedWanted {
		types = append(types, event.OpportunityCreated, event.OpportunityStageChanged, event.QuoteSent, event.DealWon, event.DealLost)
	}
	opps := map[oppKey][]oppEvent{}
	err := event.CountedAt(ctx, tx, tenantID, ConsumerName, pos, types, func(e event.Event) error {
		agg.add(byType[e.Type], &e, 1, 0)
		if derivedWanted && isOpportunityEvent(&e) {
			k := oppKey{e.Source, e.OpportunityID}
			opps[k] = append(opps[k], oppEventOf(&e))
		}
		return nil
	})
	if err != nil {
		return err
	}
	for k, evs := range opps {
		for _, d := range derive(tenantID, k, evs) {
			agg.add(byType[d.Type], &d, 1, 0)
		}
	}
	return nil
}
