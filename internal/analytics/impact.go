package analytics

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/rallyehq/rallye/internal/holdout"
	"github.com/rallyehq/rallye/internal/period"
	"github.com/rallyehq/rallye/internal/rallye"
)

// How the impact of a challenge is measured (stated in the README):
//
//   - participants: the people enrolled in the challenge;
//   - controls: the challenge's holdout group when it has one (people drawn
//     at random and kept out: the honest comparison), otherwise the active
//     reps of the company who were not invited to it ("non-participants",
//     who may differ from participants in ways the comparison cannot see);
//   - periods: "during" is the challenge's window in whole local days
//     (capped at today), "before" the same number of days just before it;
//   - per person, the KPI engine's own value for each period (the level 3
//     dashboard value); a person counts when they have a value in both;
//   - the estimate is the difference in differences: mean change of the
//     participants minus mean change of the controls, with a 95 % interval
//     (bootstrap with a recorded seed by default, or the normal
//     approximation), and "not enough data" below MinImpactSample people
//     (or the company's minimum group size) in either group.

// DefaultImpactKPIs are the KPIs an impact shows when none is named:
// conversion (win rate), average basket and median closing time.
var DefaultImpactKPIs = []string{"win_rate", "average_basket", "median_closing_days"}

// KPISource gives the KPI engine's per-person values (kpi.Service).
type KPISource interface {
	PersonValues(ctx context.Context, tenantID uuid.UUID, key string, people []uuid.UUID, periods []period.Period) ([][]*float64, error)
}

// SetKPI sets where per-person KPI values come from.
func (s *Service) SetKPI(k KPISource) { s.kpi = k }

// Control groups.
const (
	ControlHoldout         = "holdout"
	ControlNonParticipants = "non_participants"
)

// ImpactRequest asks for the impact of a challenge.
type ImpactRequest struct {
	ChallengeID uuid.UUID
	// KPIKeys: none means DefaultImpactKPIs.
	KPIKeys []string
	Method  Method
	// Seed of the bootstrap; nil: one derived from the challenge id, so
	// that the same question gets the same answer.
	Seed *int64
}

// KPIImpact is the impact on one KPI.
type KPIImpact struct {
	Key      string
	Estimate Estimate
}

// Impact is the answer of GetImpact.
type Impact struct {
	ChallengeID    uuid.UUID
	Control        string
	HoldoutShare   float64
	HoldoutSeed    int64
	Before, During period.Period
	MinSample      int
	KPIs           []KPIImpact
}

// Impact measures the effect of a challenge on KPIs (HR, admins, and
// managers for challenges covering their teams or people).
func (s *Service) Impact(ctx context.Context, p rallye.Principal, req ImpactRequest) (Impact, error) {
	keys := req.KPIKeys
	if len(keys) == 0 {
		keys = DefaultImpactKPIs
	}
	out := Impact{ChallengeID: req.ChallengeID}
	var treated, control []uuid.UUID
	err := s.db.ReadTenant(ctx, p.TenantID, func(tx pgx.Tx) error {
		settings, err := readSettings(ctx, tx, p.TenantID)
		if err != nil {
			return err
		}
		out.MinSample = max(MinImpactSample, settings.MinGroupSize)
		sc, err := callerScope(ctx, tx, p)
		if err != nil {
			return err
		}
		if !sc.all && sc.managed == nil {
			return rallye.Errorf(rallye.CodePermissionDenied, "only HR, admins and managers read the impact of a challenge")
		}
		var starts, ends *time.Time
		var held []uuid.UUID
		err = tx.QueryRow(ctx, `SELECT starts_at, ends_at, holdout_share, coalesce(holdout_seed, 0), holdout_user_ids
			FROM challenges WHERE tenant_id = $1 AND id = $2`, p.TenantID, req.ChallengeID).
			Scan(&starts, &ends, &out.HoldoutShare, &out.HoldoutSeed, &held)
		if err != nil {
			if isNoRows(err) {
				return &rallye.Error{Code: rallye.CodeNotFound, Field: "challenge_id", Message: "the challenge does not exist"}
			}
			return fmt.Errorf("read challenge: %w", err)
		}
		pop, err := s.loadPopulation(ctx, tx, p.TenantID, []uuid.UUID{req.ChallengeID}, time.Time{}, time.Time{}, sc)
		if err != nil {
			return err
		}
		now := s.now()
		if starts == nil || !now.After(*starts) {
			return rallye.Errorf(rallye.CodeFailedPrecondition, "the challenge has not started: there is nothing to measure yet")
		}
		loc, err := companyLocation(ctx, tx, p.TenantID)
		if err != nil {
			return err
		}
		end := now
		if ends != nil && ends.Before(now) {
			end = *ends
		}
		out.Before, out.During = impactPeriods(*starts, end, loc)
		for _, r := range pop.records {
			if r.OptedIn {
				treated = append(treated, r.UserID)
			}
		}
		if out.HoldoutShare > 0 {
			out.Control, control = ControlHoldout, held
			return nil
		}
		out.Control = ControlNonParticipants
		rows, err := tx.Query(ctx, `SELECT id FROM users WHERE tenant_id = $1 AND active AND 'rep' = ANY(roles) ORDER BY id`, p.TenantID)
		if err != nil {
			return fmt.Errorf("read reps: %w", err)
		}
		reps, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
		if err != nil {
			return fmt.Errorf("read reps: %w", err)
		}
		for _, id := range reps {
			if pop.byID[id] == nil && !holdout.Contains(held, id) {
				control = append(control, id)
			}
		}
		return nil
	})
	if err != nil {
		return Impact{}, err
	}
	seed := int64(binary.BigEndian.Uint64(req.ChallengeID[8:]))
	if req.Seed != nil {
		seed = *req.Seed
	}
	if s.kpi == nil {
		return Impact{}, fmt.Errorf("analytics: no KPI source")
	}
	people := append(append([]uuid.UUID{}, treated...), control...)
	periods := []period.Period{out.Before, out.During}
	for _, key := range keys {
		vals, err := s.kpi.PersonValues(ctx, p.TenantID, key, people, periods)
		if err != nil {
			if rallye.ErrorCode(err) == rallye.CodeNotFound {
				return Impact{}, &rallye.Error{Code: rallye.CodeNotFound, Field: "kpi_keys", Message: fmt.Sprintf("no KPI %q in the company", key)}
			}
			return Impact{}, fmt.Errorf("read KPI %s: %w", key, err)
		}
		var ts, cs []Sample
		for i, v := range vals {
			if v[0] == nil || v[1] == nil {
				continue
			}
			smp := Sample{Before: *v[0], During: *v[1]}
			if i < len(treated) {
				ts = append(ts, smp)
			} else {
				cs = append(cs, smp)
			}
		}
		out.KPIs = append(out.KPIs, KPIImpact{Key: key, Estimate: DiffInDiff(ts, cs, req.Method, seed, DefaultResamples, out.MinSample)})
	}
	return out, nil
}

// impactPeriods returns the "before" and "during" periods of a challenge
// running from start to end: whole local days, the same number before.
func impactPeriods(start, end time.Time, loc *time.Location) (before, during period.Period) {
	s := start.In(loc)
	first := time.Date(s.Year(), s.Month(), s.Day(), 0, 0, 0, 0, loc)
	e := end.In(loc)
	last := time.Date(e.Year(), e.Month(), e.Day(), 0, 0, 0, 0, loc)
	if last.Before(end) {
		last = last.AddDate(0, 0, 1)
	}
	days := 0
	for d := first; d.Before(last); d = d.AddDate(0, 0, 1) {
		days++
	}
	days = max(days, 1)
	during = period.Period{Kind: period.Day, Start: first, End: first.AddDate(0, 0, days)}
	before = period.Period{Kind: period.Day, Start: first.AddDate(0, 0, -days), End: first}
	return before, during
}
