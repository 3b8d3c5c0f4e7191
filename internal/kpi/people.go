package kpi

import (
	"context"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/rallyehq/rallye/internal/period"
	"github.com/rallyehq/rallye/internal/rallye"
)

// PersonValues returns, for each person, the value of one KPI over
// consecutive periods (out[person][period]; nil: no value, or still being
// computed): the level 3 values of the dashboards, read in one transaction.
// Analytics measures the impact of challenges on them.
func (s *Service) PersonValues(ctx context.Context, tenantID uuid.UUID, key string, people []uuid.UUID, periods []period.Period) ([][]*float64, error) {
	out := make([][]*float64, len(people))
	if len(people) == 0 {
		return out, nil
	}
	err := s.db.ReadTenant(ctx, tenantID, func(tx pgx.Tx) error {
		r, err := s.newReader(ctx, tx, tenantID, s.Now())
		if err != nil {
			return err
		}
		if _, ok := r.kpis[key]; !ok {
			return rallye.NotFound("KPI " + key)
		}
		scopes := make([]ScopeRef, len(people))
		for i, id := range people {
			scopes[i] = ScopeRef{Kind: ScopePerson, ID: id}
		}
		vals, err := r.values(ctx, []string{key}, scopes, periods)
		if err != nil {
			return err
		}
		for i := range people {
			out[i] = make([]*float64, len(periods))
			for j := range periods {
				if v := vals[i][j][key]; !v.Computing {
					out[i][j] = v.Value
				}
			}
		}
		return nil
	})
	return out, err
}
