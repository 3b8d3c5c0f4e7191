package analytics

import (
	"context"

	"github.com/google/uuid"

	"github.com/rallyehq/rallye/internal/export"
	"github.com/rallyehq/rallye/internal/rallye"
)

// ParticipationColumns are the columns of the participation export, in
// order (stable: new columns only ever go at the end; the README lists
// them).
var ParticipationColumns = []string{
	"row_kind", "team_id", "team_name", "tenure_band", "user_id", "display_name", "period_start", "period_end",
	"invited", "opted_in", "active", "missions_completed", "completion_rate", "active_first_week", "dropped_off",
	"points", "points_median", "points_p90", "active_days", "last_active_date", "withheld",
}

// ImpactColumns are the columns of the impact export, in order (stable).
var ImpactColumns = []string{
	"challenge_id", "control", "holdout_share", "holdout_seed", "before_start", "during_start", "during_end",
	"min_sample", "kpi_key", "enough_data", "estimate", "low", "high", "interval_method", "seed", "resamples",
	"participants", "participants_mean_before", "participants_mean_during",
	"controls", "controls_mean_before", "controls_mean_during",
}

// Row kinds of the participation export.
const (
	RowTotal  = "total"
	RowTeam   = "team"
	RowTenure = "tenure"
	RowPerson = "person"
)

// BandName is a tenure band's name in exports.
func BandName(b TenureBand) string {
	switch b {
	case BandUnder3Months:
		return "under_3_months"
	case Band3To12Months:
		return "3_to_12_months"
	case Band1To3Years:
		return "1_to_3_years"
	case BandOver3Years:
		return "over_3_years"
	}
	return "unknown"
}

// ExportParticipation writes Participation as rows of ParticipationColumns
// through row: the total, each team, each tenure band, then (IncludePeople)
// each person; a withheld group's row says so and carries no figure. A rep
// gets their own person row only. The rows come from the same computation
// as GetParticipation, under the same privacy rules, so the two agree.
func (s *Service) ExportParticipation(ctx context.Context, p rallye.Principal, req ParticipationRequest, row func(cells ...any) error) error {
	// Who sees only themselves (callerScope's rule): not HR, not an admin,
	// not a manager signed in as a person.
	self := !p.Has(rallye.RoleAdmin, rallye.RoleHR) && !(p.Has(rallye.RoleManager) && p.IsPerson())
	if self {
		req.IncludePeople = true
	}
	part, err := s.Participation(ctx, p, req)
	if err != nil {
		return err
	}
	start, end := part.Start, part.End
	group := func(kind string, team uuid.UUID, teamName string, band string, st Stats) error {
		if st.Withheld {
			return row(kind, optID(team), nilIfEmpty(teamName), nilIfEmpty(band), nil, nil, start, end,
				nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, true)
		}
		var median, p90 any
		if st.Points != nil {
			median, p90 = st.Points.Median, st.Points.P90
		}
		return row(kind, optID(team), nilIfEmpty(teamName), nilIfEmpty(band), nil, nil, start, end,
			st.Invited, st.OptedIn, st.Active, st.MissionsCompleted, st.CompletionRate, st.ActiveFirstWeek, st.DroppedOff,
			nil, median, p90, nil, nil, false)
	}
	if !self {
		if err := group(RowTotal, uuid.Nil, "", "", part.Total); err != nil {
			return err
		}
		for _, t := range part.ByTeam {
			if err := group(RowTeam, t.TeamID, t.TeamName, "", t.Stats); err != nil {
				return err
			}
		}
		for _, b := range part.ByTenure {
			if err := group(RowTenure, uuid.Nil, "", BandName(b.Band), b.Stats); err != nil {
				return err
			}
		}
	}
	for _, ps := range part.People {
		if err := row(RowPerson, optID(ps.TeamID), nil, BandName(ps.Band), ps.UserID.String(), ps.DisplayName, start, end,
			b01(ps.Invited), b01(ps.OptedIn), b01(ps.Active), ps.MissionsCompleted, nil, nil, nil,
			ps.Points, nil, nil, ps.ActiveDays, export.Date(ps.LastActive), false); err != nil {
			return err
		}
	}
	return nil
}

// ExportImpact writes Impact as rows of ImpactColumns, one per KPI; a KPI
// without enough data has its sizes and no figure.
func (s *Service) ExportImpact(ctx context.Context, p rallye.Principal, req ImpactRequest, row func(cells ...any) error) error {
	imp, err := s.Impact(ctx, p, req)
	if err != nil {
		return err
	}
	for _, k := range imp.KPIs {
		e := k.Estimate
		head := []any{imp.ChallengeID.String(), imp.Control, imp.HoldoutShare, imp.HoldoutSeed,
			imp.Before.Start, imp.During.Start, imp.During.End, imp.MinSample, k.Key, e.Enough}
		var figures []any
		if e.Enough {
			figures = []any{e.Effect, e.Low, e.High, string(e.Method), e.Seed, e.Resamples,
				e.Treated, e.TreatedBefore, e.TreatedDuring, e.Control, e.ControlBefore, e.ControlDuring}
		} else {
			figures = []any{nil, nil, nil, nil, nil, nil, e.Treated, nil, nil, e.Control, nil, nil}
		}
		if err := row(append(head, figures...)...); err != nil {
			return err
		}
	}
	return nil
}

// b01 is a person's yes/no as 1/0, so that a column sums to the group's
// count in a spreadsheet.
func b01(b bool) int {
	if b {
		return 1
	}
	return 0
}

func optID(id uuid.UUID) any {
	if id == uuid.Nil {
		return nil
	}
	return id.String()
}

func nilIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}
