package analytics

import (
	"cmp"
	"context"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/rallyehq/rallye/internal/rallye"
)

// NonParticipant is someone invited to challenges of a window who took part
// in none.
type NonParticipant struct {
	UserID            uuid.UUID
	DisplayName       string
	TeamID            uuid.UUID
	Band              TenureBand
	InvitedChallenges int
}

// NonParticipantCount counts a team's invited people and those who never
// took part; Withheld blanks the count under the minimum group size.
type NonParticipantCount struct {
	TeamID             uuid.UUID
	TeamName           string
	Invited            int
	NeverParticipating int
	Withheld           bool
}

// NonParticipants is the answer of ListNonParticipants.
type NonParticipants struct {
	People       []NonParticipant
	ByTeam       []NonParticipantCount
	MinGroupSize int
}

// NonParticipantsRequest selects the window and, optionally, a team.
type NonParticipantsRequest struct {
	Start, End time.Time
	TeamID     uuid.UUID
}

// NonParticipants lists who was invited to a challenge overlapping the
// window and took part in none, for HR, admins and managers (their teams).
func (s *Service) NonParticipants(ctx context.Context, p rallye.Principal, req NonParticipantsRequest) (NonParticipants, error) {
	if err := checkPeriod(req.Start, req.End); err != nil {
		return NonParticipants{}, err
	}
	var out NonParticipants
	err := s.db.ReadTenant(ctx, p.TenantID, func(tx pgx.Tx) error {
		settings, err := readSettings(ctx, tx, p.TenantID)
		if err != nil {
			return err
		}
		out.MinGroupSize = settings.MinGroupSize
		sc, err := callerScope(ctx, tx, p)
		if err != nil {
			return err
		}
		if !sc.all && sc.managed == nil {
			return rallye.Errorf(rallye.CodePermissionDenied, "only HR, admins and managers read who does not take part")
		}
		var filter []uuid.UUID
		if req.TeamID != uuid.Nil {
			if filter, err = teamFilter(ctx, tx, p.TenantID, req.TeamID, sc); err != nil {
				return err
			}
		}
		loc, err := companyLocation(ctx, tx, p.TenantID)
		if err != nil {
			return err
		}
		pop, err := s.loadPopulation(ctx, tx, p.TenantID, nil, req.Start, req.End, sc)
		if err != nil {
			return err
		}
		if err := pop.activity(ctx, tx, p.TenantID, loc, pop.records); err != nil {
			return err
		}
		invited := map[uuid.UUID]int{}
		for _, rs := range pop.invitedTo {
			for _, r := range rs {
				invited[r.UserID]++
			}
		}
		names, err := teamNames(ctx, tx, p.TenantID)
		if err != nil {
			return err
		}
		counts := map[uuid.UUID]*NonParticipantCount{}
		for _, r := range pop.records {
			if !sc.sees(r) || filter != nil && !slices.ContainsFunc(r.memberships, func(t uuid.UUID) bool { return slices.Contains(filter, t) }) {
				continue
			}
			c := counts[r.TeamID]
			if c == nil {
				c = &NonParticipantCount{TeamID: r.TeamID, TeamName: names[r.TeamID]}
				counts[r.TeamID] = c
			}
			c.Invited++
			if !r.Active {
				c.NeverParticipating++
				out.People = append(out.People, NonParticipant{UserID: r.UserID, DisplayName: r.DisplayName,
					TeamID: r.TeamID, Band: r.Band, InvitedChallenges: invited[r.UserID]})
			}
		}
		k, population := settings.MinGroupSize, len(pop.records)
		for _, c := range counts {
			if Withheld(c.Invited, population, k) {
				c.NeverParticipating, c.Withheld = 0, true
			}
			out.ByTeam = append(out.ByTeam, *c)
		}
		slices.SortFunc(out.ByTeam, func(a, b NonParticipantCount) int {
			return cmp.Or(cmp.Compare(a.TeamName, b.TeamName), cmp.Compare(a.TeamID.String(), b.TeamID.String()))
		})
		slices.SortFunc(out.People, func(a, b NonParticipant) int {
			return cmp.Or(cmp.Compare(a.DisplayName, b.DisplayName), cmp.Compare(a.UserID.String(), b.UserID.String()))
		})
		return nil
	})
	return out, err
}
