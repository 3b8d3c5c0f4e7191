package challenge_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/rallyehq/rallye/internal/challenge"
	"github.com/rallyehq/rallye/internal/org"
	"github.com/rallyehq/rallye/internal/rallye"
)

// TestPermissions checks the finer rules per role and company.
func TestPermissions(t *testing.T) {
	b := setup(t)
	ctx := context.Background()
	c := b.upsell(t)
	south := b.person(t, "south-manager", org.LocaleFR, []rallye.Role{rallye.RoleManager}, b.south)
	northRep, southRep := b.reps[0], b.reps[2]
	other, otherAdmin, err := b.org.CreateTenant(ctx, org.NewTenant{Name: "Globex", Slug: "globex", TimeZone: "Europe/Paris",
		DefaultLocale: org.LocaleEN, Admin: org.UserInput{DisplayName: "G", Email: "g@globex.test"}})
	if err != nil {
		t.Fatal(err)
	}
	stranger := rallye.Principal{TenantID: other.ID, UserID: otherAdmin.ID, Roles: []rallye.Role{rallye.RoleAdmin}}

	for _, tc := range []struct {
		name string
		p    rallye.Principal
		see  rallye.Code
	}{
		{"OKManager", principal(b.manager), ""},
		{"OKAdmin", b.admin, ""},
		{"OKHR", principal(b.hr), ""},
		{"OKParticipant", principal(northRep), ""},
		{"ErrRepOfAnotherTeam", principal(southRep), rallye.CodeNotFound},
		{"ErrManagerOfAnotherTeam", principal(south), rallye.CodeNotFound},
		{"ErrOtherTenant", stranger, rallye.CodeNotFound},
	} {
		t.Run("Get/"+tc.name, func(t *testing.T) {
			_, err := b.svc.Get(ctx, tc.p, c.ID)
			wantCode(t, err, tc.see)
			_, _, err = b.svc.Standings(ctx, tc.p, c.ID)
			wantCode(t, err, tc.see)
		})
	}
	for _, tc := range []struct {
		name string
		p    rallye.Principal
		want rallye.Code
	}{
		{"ErrHR", principal(b.hr), rallye.CodePermissionDenied},
		{"ErrParticipant", principal(northRep), rallye.CodePermissionDenied},
		{"ErrManagerOfAnotherTeam", principal(south), rallye.CodeNotFound},
		{"ErrOtherTenant", stranger, rallye.CodeNotFound},
	} {
		t.Run("Manage/"+tc.name, func(t *testing.T) {
			_, err := b.svc.Extend(ctx, tc.p, c.ID, c.EndsAt.Add(time.Hour))
			wantCode(t, err, tc.want)
			_, err = b.svc.Cancel(ctx, tc.p, c.ID)
			wantCode(t, err, tc.want)
			_, err = b.svc.Update(ctx, tc.p, c.ID, challenge.Patch{Mask: []string{"name"},
				Definition: challenge.Definition{Name: challenge.Text{FR: "x", EN: "x"}}})
			wantCode(t, err, tc.want)
		})
	}
	t.Run("Create/ErrManagerOutsideTheirTeams", func(t *testing.T) {
		_, err := b.svc.CreateFromTemplate(ctx, principal(b.manager), challenge.FromTemplateRequest{
			TemplateKey: "upsell", TeamIDs: []uuid.UUID{b.south.ID}, Publish: true})
		wantCode(t, err, rallye.CodePermissionDenied)
		_, err = b.svc.CreateFromTemplate(ctx, principal(b.manager), challenge.FromTemplateRequest{
			TemplateKey: "upsell", UserIDs: []uuid.UUID{southRep.ID}})
		wantCode(t, err, rallye.CodePermissionDenied)
	})
	t.Run("Create/ErrOtherTenantsTeam", func(t *testing.T) {
		_, err := b.svc.CreateFromTemplate(ctx, stranger, challenge.FromTemplateRequest{
			TemplateKey: "upsell", TeamIDs: []uuid.UUID{b.north.ID}})
		wantCode(t, err, rallye.CodeNotFound)
	})
	t.Run("Create/OKParentManagerForSubTeam", func(t *testing.T) {
		boss := b.person(t, "boss", org.LocaleFR, []rallye.Role{rallye.RoleManager}, b.sales)
		if _, err := b.svc.CreateFromTemplate(ctx, principal(boss), challenge.FromTemplateRequest{
			TemplateKey: "prospecting", TeamIDs: []uuid.UUID{b.south.ID}}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("Join/ErrNotEligible", func(t *testing.T) {
		err := b.svc.Join(ctx, principal(southRep), c.ID)
		wantCode(t, err, rallye.CodeNotFound)
	})
	t.Run("Review/ErrOtherTenant", func(t *testing.T) {
		_, err := b.svc.Review(ctx, stranger, challenge.ReviewRequest{SubmissionID: uuid.New(), Approve: true, Note: ""})
		wantCode(t, err, rallye.CodeNotFound)
	})
	t.Run("List", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			p    rallye.Principal
			n    int
		}{{"Manager", principal(b.manager), 1}, {"OtherManager", principal(south), 1}, {"HR", principal(b.hr), 2}, {"OtherTenant", stranger, 0}} {
			list, err := b.svc.List(ctx, tc.p, challenge.ListRequest{Size: 10})
			if err != nil || len(list) != tc.n {
				t.Errorf("%s lists %d challenges, want %d (%v)", tc.name, len(list), tc.n, err)
			}
		}
	})
	t.Run("Participants/ErrRepsOfOtherTeams", func(t *testing.T) {
		rows, err := b.svc.Participants(ctx, principal(b.hr), challenge.ParticipantsRequest{ChallengeID: c.ID, Size: 10})
		if err != nil || len(rows) != 2 {
			t.Fatalf("HR sees %d participants, %v", len(rows), err)
		}
		_, err = b.svc.Participants(ctx, principal(south), challenge.ParticipantsRequest{ChallengeID: c.ID, Size: 10})
		wantCode(t, err, rallye.CodeNotFound)
	})
}

// TestDraftEditsAndPublish: a draft can change everything; once published,
// missions cannot, and participants can be added but not removed.
func TestDraftEditsAndPublish(t *testing.T) {
	b := setup(t)
	ctx := context.Background()
	m := principal(b.manager)
	d, err := b.svc.CreateFromTemplate(ctx, m, challenge.FromTemplateRequest{TemplateKey: "prospecting",
		UserIDs: []uuid.UUID{b.reps[0].ID}, RequestID: "draft-1",
		Overrides: challenge.Definition{Name: challenge.Text{FR: "Sprint d'appels", EN: "Call sprint"}}, Mask: []string{"name"},
		Adjustments: []challenge.MissionAdjustment{{Key: "calls", Target: ptr(40.0)}, {Key: "leads-qualified", Remove: true}}})
	if err != nil {
		t.Fatal(err)
	}
	if d.State != challenge.StateDraft || d.Definition.Name.EN != "Call sprint" || len(d.Missions) != 3 || d.Missions[0].Target != 40 {
		t.Fatalf("draft %+v", d)
	}
	again, err := b.svc.CreateFromTemplate(ctx, m, challenge.FromTemplateRequest{TemplateKey: "prospecting",
		UserIDs: []uuid.UUID{b.reps[0].ID}, RequestID: "draft-1",
		Overrides: challenge.Definition{Name: challenge.Text{FR: "Sprint d'appels", EN: "Call sprint"}}, Mask: []string{"name"},
		Adjustments: []challenge.MissionAdjustment{{Key: "calls", Target: ptr(40.0)}, {Key: "leads-qualified", Remove: true}}})
	if err != nil || again.ID != d.ID {
		t.Fatalf("retry created %v (first %v): %v", again.ID, d.ID, err)
	}
	_, err = b.svc.CreateFromTemplate(ctx, m, challenge.FromTemplateRequest{TemplateKey: "upsell",
		UserIDs: []uuid.UUID{b.reps[0].ID}, RequestID: "draft-1"})
	wantCode(t, err, rallye.CodeInvalid)

	missions := append([]challenge.Mission{}, missionsOf(d)...)
	missions[0].Points = 120
	d2, err := b.svc.Update(ctx, m, d.ID, challenge.Patch{Definition: challenge.Definition{Missions: missions},
		TeamIDs: []uuid.UUID{b.north.ID}, Mask: []string{"missions", "team_ids"}})
	if err != nil {
		t.Fatal(err)
	}
	if d2.Missions[0].Points != 120 || d2.Missions[0].ID != d.Missions[0].ID {
		t.Fatalf("mission edit: %+v", d2.Missions[0])
	}
	t.Run("ErrBadFilterNamesField", func(t *testing.T) {
		bad := append([]challenge.Mission{}, missions...)
		bad[1].Filter = "amount >"
		_, err := b.svc.Update(ctx, m, d.ID, challenge.Patch{Definition: challenge.Definition{Missions: bad}, Mask: []string{"missions"}})
		wantCode(t, err, rallye.CodeInvalid)
		if e, _ := rallye.AsError(err); e.Field != "definition.missions[1].auto.filter" {
			t.Fatalf("field %q", e.Field)
		}
	})
	if _, err := b.svc.Publish(ctx, m, d.ID); err != nil {
		t.Fatal(err)
	}
	// Published without a start: it starts now (to the second), and reads
	// show it running before the start job has run.
	p, err := b.svc.Get(ctx, m, d.ID)
	if err != nil || p.Challenge.State != challenge.StateActive || b.stored(t, d.ID) != challenge.StateScheduled ||
		!p.Challenge.StartsAt.Equal(b.clock.Now().Truncate(time.Second)) || p.Participants != 2 {
		t.Fatalf("published: %+v, %v", p, err)
	}
	_, err = b.svc.Publish(ctx, m, d.ID)
	wantCode(t, err, rallye.CodeFailedPrecondition)
	_, err = b.svc.Update(ctx, m, d.ID, challenge.Patch{Definition: challenge.Definition{Missions: missions}, Mask: []string{"missions"}})
	wantCode(t, err, rallye.CodeFailedPrecondition)
	_, err = b.svc.Update(ctx, m, d.ID, challenge.Patch{Mask: []string{"user_ids"}})
	wantCode(t, err, rallye.CodeFailedPrecondition)
	renamed, err := b.svc.Update(ctx, m, d.ID, challenge.Patch{Definition: challenge.Definition{
		Name: challenge.Text{FR: "Sprint", EN: "Sprint"}}, Mask: []string{"name"}})
	if err != nil || renamed.Definition.Name.FR != "Sprint" {
		t.Fatalf("rename while scheduled: %v", err)
	}
}

func missionsOf(c *challenge.Challenge) []challenge.Mission {
	out := make([]challenge.Mission, len(c.Missions))
	for i, m := range c.Missions {
		out[i] = m.Mission
	}
	return out
}

func ptr[T any](v T) *T { return &v }

// TestEveryTemplateProducesAValidChallenge creates and publishes a
// challenge from each built-in template, and checks the company can
// override and reset them.
func TestEveryTemplateProducesAValidChallenge(t *testing.T) {
	b := setup(t)
	ctx := context.Background()
	templates, err := b.svc.Templates(ctx, b.admin)
	if err != nil {
		t.Fatal(err)
	}
	builtins, err := challenge.Builtins()
	if err != nil {
		t.Fatal(err)
	}
	if len(templates) != len(builtins) || len(templates) < 3 {
		t.Fatalf("%d templates, %d built-in", len(templates), len(builtins))
	}
	kinds := map[challenge.Kind]bool{}
	for _, tpl := range templates {
		t.Run(tpl.Key, func(t *testing.T) {
			kinds[tpl.Definition.Kind] = true
			c, err := b.svc.CreateFromTemplate(ctx, principal(b.manager), challenge.FromTemplateRequest{
				TemplateKey: tpl.Key, TeamIDs: []uuid.UUID{b.north.ID}, Publish: true})
			if err != nil {
				t.Fatal(err)
			}
			if c.State != challenge.StateScheduled || len(c.Missions) != len(tpl.Definition.Missions) || c.TemplateKey != tpl.Key {
				t.Fatalf("challenge %+v", c)
			}
			for _, m := range c.Missions {
				if m.Name.FR == "" || m.Name.EN == "" {
					t.Errorf("mission %s lacks a name in one language", m.Key)
				}
			}
			d := b.get(t, principal(b.reps[0]), c.ID)
			if d.Me == nil || len(d.Me.Missions) != len(c.Missions) {
				t.Fatalf("a rep of the team does not see the missions: %+v", d.Me)
			}
			for _, mv := range d.Me.Missions {
				if mv.Missing == "" || strings.Contains(mv.Missing, "%!") {
					t.Errorf("mission %s: missing text %q", mv.Key, mv.Missing)
				}
			}
		})
	}
	for _, k := range []challenge.Kind{challenge.KindOnboarding, challenge.KindUpsell, challenge.KindProspecting} {
		if !kinds[k] {
			t.Errorf("no %s template", k)
		}
	}

	t.Run("Override", func(t *testing.T) {
		def := builtins["upsell"]
		def.Missions = def.Missions[:1]
		def.Missions[0].Target = 20000
		tpl, err := b.svc.UpdateTemplate(ctx, b.admin, "upsell", def)
		if err != nil || !tpl.Overridden || !tpl.Builtin || tpl.Definition.Missions[0].Target != 20000 {
			t.Fatalf("override: %+v %v", tpl, err)
		}
		c, err := b.svc.CreateFromTemplate(ctx, principal(b.manager), challenge.FromTemplateRequest{TemplateKey: "upsell", TeamIDs: []uuid.UUID{b.north.ID}})
		if err != nil || len(c.Missions) != 1 || c.Missions[0].Target != 20000 {
			t.Fatalf("challenge from the override: %v", err)
		}
		reset, err := b.svc.ResetTemplate(ctx, b.admin, "upsell")
		if err != nil || reset.Overridden || len(reset.Definition.Missions) != 3 {
			t.Fatalf("reset: %+v %v", reset, err)
		}
		custom := builtins["prospecting"]
		custom.Name = challenge.Text{FR: "Relances", EN: "Follow-ups"}
		if _, err := b.svc.UpdateTemplate(ctx, b.admin, "follow-ups", custom); err != nil {
			t.Fatal(err)
		}
		if _, err := b.svc.ResetTemplate(ctx, b.admin, "follow-ups"); err != nil {
			t.Fatal(err)
		}
		_, err = b.svc.Template(ctx, b.admin, "follow-ups")
		wantCode(t, err, rallye.CodeNotFound)
	})
	t.Run("ErrInvalidOverride", func(t *testing.T) {
		def := builtins["upsell"]
		def.Format = challenge.FormatRace // without a target
		_, err := b.svc.UpdateTemplate(ctx, b.admin, "upsell", def)
		wantCode(t, err, rallye.CodeInvalid)
	})
}

// TestBasketUplift: the average basket target is personal, from the rep's
// own deals over the baseline days before the start.
func TestBasketUplift(t *testing.T) {
	b := setup(t)
	rep := b.reps[0]
	past := b.clock.Now().Add(-10 * 24 * time.Hour)
	b.ingest(t, dealWon(rep, past, 2_000_00, "new"), dealWon(rep, past, 4_000_00, "new"))
	c := b.upsell(t)
	b.start(t, c)
	m := mission(t, b.get(t, principal(rep), c.ID), "basket-uplift")
	if m.Target != 3300 { // (2,000 + 4,000) / 2 × 1.1
		t.Fatalf("personal target %v, want 3300", m.Target)
	}
	if m2 := mission(t, b.get(t, principal(b.reps[1]), c.ID), "basket-uplift"); m2.Target != 1000 {
		t.Fatalf("a rep without history gets the floor, got %v", m2.Target)
	}
	at := c.StartsAt.Add(time.Hour)
	b.ingest(t, dealWon(rep, at, 3_000_00, "new"), dealWon(rep, at, 3_500_00, "new"), dealWon(rep, at, 3_500_00, "new"))
	if m = mission(t, b.get(t, principal(rep), c.ID), "basket-uplift"); !m.Completed || m.Current < 3333 {
		t.Fatalf("average %v completed %v", m.Current, m.Completed)
	}
}
