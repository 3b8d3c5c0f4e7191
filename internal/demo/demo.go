// Package demo seeds a demonstration company so that a newcomer sees a living
// system at once: teams, reps, managers, HR and an admin. Seeding is
// idempotent (teams carry request ids, people external ids): running it again
// changes nothing.
package demo

import (
	"context"
	"fmt"

	"github.com/google/uuid"

	"github.com/rallyehq/rallye/internal/org"
	"github.com/rallyehq/rallye/internal/rallye"
)

// Slug is the demo company's slug.
const Slug = "demo"

// Result is what Seed made (or found).
type Result struct {
	Tenant org.Tenant
	Teams  []org.Team
	People []org.User
}

type teamSpec struct {
	key, name, parent string
}

var teams = []teamSpec{
	{"sales-france", "Ventes France", ""},
	{"north", "Région Nord", "sales-france"},
	{"south", "Région Sud", "sales-france"},
	{"key-accounts", "Grands comptes", ""},
}

type personSpec struct {
	ext, name, email string
	locale           org.Locale
	roles            []rallye.Role
	teams            []string
}

var people = []personSpec{
	{"crm-mgr-001", "Marc Lefèvre", "marc.lefevre@demo.rallye.test", org.LocaleFR, []rallye.Role{rallye.RoleManager}, []string{"north"}},
	{"crm-mgr-002", "Sophie Martin", "sophie.martin@demo.rallye.test", org.LocaleFR, []rallye.Role{rallye.RoleManager}, []string{"south"}},
	{"crm-mgr-003", "James Carter", "james.carter@demo.rallye.test", org.LocaleEN, []rallye.Role{rallye.RoleManager}, []string{"key-accounts"}},
	{"hr-001", "Hélène Roux", "helene.roux@demo.rallye.test", org.LocaleFR, []rallye.Role{rallye.RoleHR}, nil},
	{"crm-rep-001", "Camille Dubois", "camille.dubois@demo.rallye.test", org.LocaleFR, []rallye.Role{rallye.RoleRep}, []string{"north"}},
	{"crm-rep-002", "Lucas Bernard", "lucas.bernard@demo.rallye.test", org.LocaleFR, []rallye.Role{rallye.RoleRep}, []string{"north"}},
	{"crm-rep-003", "Inès Moreau", "ines.moreau@demo.rallye.test", org.LocaleFR, []rallye.Role{rallye.RoleRep}, []string{"north"}},
	{"crm-rep-004", "Thomas Petit", "thomas.petit@demo.rallye.test", org.LocaleFR, []rallye.Role{rallye.RoleRep}, []string{"south"}},
	{"crm-rep-005", "Léa Garnier", "lea.garnier@demo.rallye.test", org.LocaleFR, []rallye.Role{rallye.RoleRep}, []string{"south"}},
	{"crm-rep-006", "Hugo Fontaine", "hugo.fontaine@demo.rallye.test", org.LocaleFR, []rallye.Role{rallye.RoleRep}, []string{"south"}},
	{"crm-rep-007", "Emily Walsh", "emily.walsh@demo.rallye.test", org.LocaleEN, []rallye.Role{rallye.RoleRep}, []string{"key-accounts"}},
	{"crm-rep-008", "Noah Schmidt", "noah.schmidt@demo.rallye.test", org.LocaleEN, []rallye.Role{rallye.RoleRep}, []string{"key-accounts"}},
}

// Seed creates the demo company, or completes it if it exists.
func Seed(ctx context.Context, svc *org.Service) (Result, error) {
	tenant, err := svc.TenantByRef(ctx, Slug)
	if rallye.ErrorCode(err) == rallye.CodeNotFound {
		tenant, _, err = svc.CreateTenant(ctx, org.NewTenant{
			Name: "Rallye Démo", Slug: Slug, TimeZone: "Europe/Paris", DefaultLocale: org.LocaleFR,
			Admin: org.UserInput{DisplayName: "Alice Admin", Email: "alice.admin@demo.rallye.test", Locale: org.LocaleFR},
		})
	}
	if err != nil {
		return Result{}, fmt.Errorf("demo company: %w", err)
	}
	res := Result{Tenant: tenant}
	operator := rallye.Principal{TenantID: tenant.ID, Roles: []rallye.Role{rallye.RoleAdmin}}

	teamIDs := map[string]uuid.UUID{}
	for _, t := range teams {
		team, err := svc.CreateTeam(ctx, operator, org.CreateTeamRequest{
			Name: t.name, ParentID: teamIDs[t.parent], ExternalID: "team-" + t.key, RequestID: "demo-team-" + t.key,
		})
		if err != nil {
			return Result{}, fmt.Errorf("demo team %s: %w", t.key, err)
		}
		teamIDs[t.key] = team.ID
		res.Teams = append(res.Teams, team)
	}

	rows := make([]org.ImportRow, len(people))
	for i, p := range people {
		ids := make([]uuid.UUID, 0, len(p.teams))
		for _, k := range p.teams {
			ids = append(ids, teamIDs[k])
		}
		rows[i].User = org.UserInput{
			DisplayName: p.name, Email: p.email, Locale: p.locale, ExternalID: p.ext, Roles: p.roles, TeamIDs: ids,
		}
	}
	imp, err := svc.ImportUsers(ctx, operator, rows)
	if err != nil {
		return Result{}, fmt.Errorf("demo people: %w", err)
	}
	if len(imp.Rejected) > 0 {
		r := imp.Rejected[0]
		return Result{}, fmt.Errorf("demo person %d rejected: %s: %s", r.Index, r.Field, r.Message)
	}
	users, err := svc.ListUsers(ctx, operator, org.ListUsersRequest{Size: 500})
	if err != nil {
		return Result{}, err
	}
	res.People = users
	return res, nil
}
