package analytics_test

import (
	"context"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/rallyehq/rallye/internal/analytics"
	"github.com/rallyehq/rallye/internal/holdout"
	"github.com/rallyehq/rallye/internal/period"
	"github.com/rallyehq/rallye/internal/rallye"
)

// plantedKPI serves per-person values with a planted effect for the
// treated people, and records what it was asked.
type plantedKPI struct {
	treated map[uuid.UUID]bool
	effect  float64
	seed    uint64
	asked   []uuid.UUID
	periods []period.Period
}

func (k *plantedKPI) PersonValues(_ context.Context, _ uuid.UUID, key string, people []uuid.UUID, periods []period.Period) ([][]*float64, error) {
	if key == "nope" {
		return nil, rallye.NotFound("KPI nope")
	}
	k.asked, k.periods = people, periods
	rng := rand.New(rand.NewPCG(k.seed, 1))
	out := make([][]*float64, len(people))
	for i, id := range people {
		before := 40 + rng.NormFloat64()*5
		during := before + 1 + rng.NormFloat64()*2
		if k.treated[id] {
			during += k.effect
		}
		out[i] = []*float64{&before, &during}
	}
	return out, nil
}

// TestImpactAgainstTheHoldout: with a holdout recorded on the challenge,
// participants (the enrolled) are compared with the held-out people over
// the window and the same length before it; a planted effect is inside the
// interval and 0 is not; without a holdout the controls are the reps not
// invited; unknown KPIs are NotFound; reps may not ask.
func TestImpactAgainstTheHoldout(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	w := newWorld(t, 5, 120)
	c := w.challenges[1] // South and South-East
	var invitedNotEnrolled, notInvited []uuid.UUID
	treated := map[uuid.UUID]bool{}
	for _, p := range w.people {
		_, enrolled := c.enrolled[p.id]
		switch {
		case enrolled:
			treated[p.id] = true
		case w.invitedTo(c, p):
			invitedNotEnrolled = append(invitedNotEnrolled, p.id)
		default:
			notInvited = append(notInvited, p.id)
		}
	}
	kpi := &plantedKPI{treated: treated, effect: 5, seed: 3}
	w.svc.SetKPI(kpi)

	t.Run("NonParticipants", func(t *testing.T) {
		imp, err := w.svc.Impact(ctx, w.hr, analytics.ImpactRequest{ChallengeID: c.id, KPIKeys: []string{"win_rate"}})
		if err != nil {
			t.Fatal(err)
		}
		e := imp.KPIs[0].Estimate
		if imp.Control != analytics.ControlNonParticipants || e.Control != len(notInvited) || e.Treated != len(treated) {
			t.Fatalf("control %s of %d (want %d), treated %d (want %d)", imp.Control, e.Control, len(notInvited), e.Treated, len(treated))
		}
		if !e.Enough || e.Low > 5 || e.High < 5 || e.Low <= 0 {
			t.Fatalf("planted +5: %+v", e)
		}
		if imp.Before.End != imp.During.Start || imp.During.Start.AddDate(0, 0, 33) != imp.During.End ||
			imp.Before.Start.AddDate(0, 0, 33) != imp.Before.End {
			t.Fatalf("periods %v %v", imp.Before, imp.During)
		}
		if len(imp.KPIs) != 1 || imp.MinSample != 10 {
			t.Fatalf("%+v", imp)
		}
	})
	t.Run("Holdout", func(t *testing.T) {
		held := slices.Clone(invitedNotEnrolled)
		holdout.Sort(held)
		if len(held) < 10 {
			t.Fatalf("only %d people to hold out: the world is too small", len(held))
		}
		err := w.db.InTenant(ctx, w.tenant.ID, func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, `UPDATE challenges SET holdout_share = 0.3, holdout_seed = 77, holdout_user_ids = $3
				WHERE tenant_id = $1 AND id = $2`, w.tenant.ID, c.id, held)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		imp, err := w.svc.Impact(ctx, w.manager, analytics.ImpactRequest{ChallengeID: c.id, Method: analytics.MethodNormal})
		if err != nil {
			t.Fatal(err)
		}
		if imp.Control != analytics.ControlHoldout || imp.HoldoutSeed != 77 || len(imp.KPIs) != 3 || imp.KPIs[0].Key != "win_rate" {
			t.Fatalf("%+v", imp)
		}
		for _, k := range imp.KPIs {
			e := k.Estimate
			if e.Control != len(held) || e.Treated != len(treated) || !e.Enough || e.Low > 5 || e.High < 5 || e.Method != analytics.MethodNormal {
				t.Fatalf("%s: %+v", k.Key, e)
			}
		}
	})
	t.Run("NotEnoughData", func(t *testing.T) {
		if _, err := w.svc.UpdateSettings(ctx, w.admin, analytics.Settings{MinGroupSize: 1000}); err != nil {
			t.Fatal(err)
		}
		defer func() { _, _ = w.svc.UpdateSettings(ctx, w.admin, analytics.DefaultSettings) }()
		imp, err := w.svc.Impact(ctx, w.hr, analytics.ImpactRequest{ChallengeID: c.id})
		if err != nil {
			t.Fatal(err)
		}
		if e := imp.KPIs[0].Estimate; e.Enough || e.Effect != 0 || imp.MinSample != 1000 {
			t.Fatalf("%+v", imp)
		}
	})
	t.Run("Errors", func(t *testing.T) {
		_, err := w.svc.Impact(ctx, w.hr, analytics.ImpactRequest{ChallengeID: c.id, KPIKeys: []string{"nope"}})
		if e, ok := rallye.AsError(err); !ok || e.Code != rallye.CodeNotFound || e.Field != "kpi_keys" {
			t.Fatalf("got %v", err)
		}
		_, err = w.svc.Impact(ctx, w.hr, analytics.ImpactRequest{ChallengeID: uuid.New()})
		if rallye.ErrorCode(err) != rallye.CodeNotFound {
			t.Fatalf("got %v", err)
		}
		rep := rallye.Principal{TenantID: w.tenant.ID, UserID: w.people[0].id, Roles: []rallye.Role{rallye.RoleRep}}
		if _, err := w.svc.Impact(ctx, rep, analytics.ImpactRequest{ChallengeID: c.id}); rallye.ErrorCode(err) != rallye.CodePermissionDenied {
			t.Fatalf("a rep: %v", err)
		}
		if _, err := w.svc.Impact(ctx, w.manager, analytics.ImpactRequest{ChallengeID: w.challenges[0].id}); err == nil {
			// Challenge 0 is North's: visible to South's manager only if one
			// of their people was invited to it.
			south := false
			for _, p := range w.people {
				if w.invitedTo(w.challenges[0], p) && slices.ContainsFunc(p.teams, func(t uuid.UUID) bool { return w.under(t, w.south.ID) }) {
					south = true
				}
			}
			if !south {
				t.Fatal("a manager measured a challenge of other teams")
			}
		}
	})
}
