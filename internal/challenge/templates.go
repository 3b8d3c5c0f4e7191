package challenge

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"fmt"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/rallyehq/rallye/internal/postgres"
	"github.com/rallyehq/rallye/internal/rallye"
)

// Templates are data: Rallye's built-in definitions live in templates/*.json
// and are copied into each company's challenge_templates on first use (and
// refreshed while the company has not overridden them). A company may
// override a built-in template or add its own; a manager creates a challenge
// from a template in one call and adjusts it.

//go:embed templates/*.json
var builtinFS embed.FS

// Template is a company's challenge template.
type Template struct {
	Key        string
	Definition Definition
	// Builtin: one of Rallye's; Overridden: the company changed it.
	Builtin, Overridden bool
	UpdatedAt           time.Time
}

// Builtins returns Rallye's built-in templates, by key.
func Builtins() (map[string]Definition, error) {
	entries, err := builtinFS.ReadDir("templates")
	if err != nil {
		return nil, err
	}
	out := map[string]Definition{}
	for _, e := range entries {
		b, err := builtinFS.ReadFile(path.Join("templates", e.Name()))
		if err != nil {
			return nil, err
		}
		var d Definition
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&d); err != nil {
			return nil, fmt.Errorf("template %s: %w", e.Name(), err)
		}
		out[strings.TrimSuffix(e.Name(), ".json")] = d
	}
	return out, nil
}

var builtins = func() map[string]Definition {
	b, err := Builtins()
	if err != nil {
		panic(err) // embedded at build time; TestBuiltinTemplates covers them
	}
	return b
}()

// seedTemplates copies the built-in templates into the company, or refreshes
// those it has not overridden.
func seedTemplates(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID) error {
	keys := make([]string, 0, len(builtins))
	for k := range builtins {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	defs := make([]string, len(keys))
	for i, k := range keys {
		b, err := json.Marshal(builtins[k])
		if err != nil {
			return err
		}
		defs[i] = string(b)
	}
	_, err := tx.Exec(ctx, `INSERT INTO challenge_templates (tenant_id, key, definition, builtin)
		SELECT $1, k, d::jsonb, true FROM unnest($2::text[], $3::text[]) AS x(k, d)
		ON CONFLICT (tenant_id, key) DO UPDATE SET definition = excluded.definition, updated_at = now()
		WHERE NOT challenge_templates.overridden AND challenge_templates.definition <> excluded.definition`,
		tenantID, keys, defs)
	if err != nil {
		return fmt.Errorf("seed templates: %w", err)
	}
	return nil
}

const templateColumns = `key, definition, builtin, overridden, updated_at`

func scanTemplate(r pgx.Row) (Template, error) {
	var t Template
	var def []byte
	if err := r.Scan(&t.Key, &def, &t.Builtin, &t.Overridden, &t.UpdatedAt); err != nil {
		return t, err
	}
	return t, json.Unmarshal(def, &t.Definition)
}

// Templates lists the company's templates by key.
func (s *Service) Templates(ctx context.Context, p rallye.Principal) ([]Template, error) {
	var out []Template
	err := s.db.InTenant(ctx, p.TenantID, func(tx pgx.Tx) error {
		if err := seedTemplates(ctx, tx, p.TenantID); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT `+templateColumns+` FROM challenge_templates WHERE tenant_id = $1 ORDER BY key`, p.TenantID)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Template, error) { return scanTemplate(r) })
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list templates: %w", err)
	}
	return out, nil
}

// Template returns one template. CodeNotFound when the company has none by
// that key.
func (s *Service) Template(ctx context.Context, p rallye.Principal, key string) (Template, error) {
	var t Template
	err := s.db.InTenant(ctx, p.TenantID, func(tx pgx.Tx) error {
		var err error
		t, err = getTemplate(ctx, tx, p.TenantID, key)
		return err
	})
	return t, err
}

func getTemplate(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, key string) (Template, error) {
	if err := seedTemplates(ctx, tx, tenantID); err != nil {
		return Template{}, err
	}
	t, err := scanTemplate(tx.QueryRow(ctx, `SELECT `+templateColumns+` FROM challenge_templates
		WHERE tenant_id = $1 AND key = $2`, tenantID, key))
	if postgres.IsNoRows(err) {
		return t, rallye.NotFound("template")
	}
	return t, err
}

// UpdateTemplate overrides a built-in template for the company, or creates
// or replaces one of its own. The definition must produce a valid
// challenge. Errors: CodeInvalid naming the field.
func (s *Service) UpdateTemplate(ctx context.Context, p rallye.Principal, key string, d Definition) (Template, error) {
	if !keyPattern.MatchString(key) {
		return Template{}, rallye.Invalid("key", "must be 1 to 63 lowercase letters, digits or dashes")
	}
	d = d.withDefaults()
	if _, err := compile(d, "definition."); err != nil {
		return Template{}, err
	}
	def, err := json.Marshal(d)
	if err != nil {
		return Template{}, err
	}
	_, builtin := builtins[key]
	var t Template
	err = s.db.InTenant(ctx, p.TenantID, func(tx pgx.Tx) error {
		if err := seedTemplates(ctx, tx, p.TenantID); err != nil {
			return err
		}
		var err error
		t, err = scanTemplate(tx.QueryRow(ctx, `INSERT INTO challenge_templates (tenant_id, key, definition, builtin, overridden, updated_by, updated_at)
			VALUES ($1, $2, $3, $4, true, $5, now())
			ON CONFLICT (tenant_id, key) DO UPDATE SET definition = excluded.definition, overridden = true,
				updated_by = excluded.updated_by, updated_at = now()
			RETURNING `+templateColumns, p.TenantID, key, def, builtin, nullID(p.UserID)))
		return err
	})
	return t, err
}

// ResetTemplate restores a built-in template to Rallye's definition, or
// deletes one of the company's own. CodeNotFound when there is none.
func (s *Service) ResetTemplate(ctx context.Context, p rallye.Principal, key string) (Template, error) {
	var t Template
	err := s.db.InTenant(ctx, p.TenantID, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM challenge_templates WHERE tenant_id = $1 AND key = $2`, p.TenantID, key)
		if err != nil {
			return err
		}
		if _, ok := builtins[key]; !ok {
			if tag.RowsAffected() == 0 {
				return rallye.NotFound("template")
			}
			t = Template{Key: key}
			return nil
		}
		t, err = getTemplate(ctx, tx, p.TenantID, key)
		return err
	})
	return t, err
}

// MissionAdjustment tunes one of a template's missions, named by key.
type MissionAdjustment struct {
	Key       string
	Target    *float64
	Points    *int64
	MinVolume *int64
	// Remove drops the mission.
	Remove bool
}

// FromTemplateRequest creates a challenge from a template in one call.
type FromTemplateRequest struct {
	TemplateKey      string
	TeamIDs, UserIDs []uuid.UUID
	StartsAt, EndsAt time.Time
	// Overrides replace the template's definition fields named in Mask, by
	// their API names (name, description, mode, format, missions,
	// scoring_rules, rewards...).
	Overrides   Definition
	Mask        []string
	Adjustments []MissionAdjustment
	Publish     bool
	RequestID   string
}

// CreateFromTemplate creates (and, with Publish, schedules) a challenge
// from one of the company's templates, adjusted. Errors: as Create, and
// CodeNotFound for an unknown template, CodeInvalid for an adjustment of a
// mission the template does not have.
func (s *Service) CreateFromTemplate(ctx context.Context, p rallye.Principal, req FromTemplateRequest) (*Challenge, error) {
	t, err := s.Template(ctx, p, req.TemplateKey)
	if err != nil {
		return nil, err
	}
	d := t.Definition
	in := req.Overrides
	for _, f := range req.Mask {
		switch f {
		case "name":
			d.Name = in.Name
		case "description":
			d.Description = in.Description
		case "mode":
			d.Mode = in.Mode
		case "format":
			d.Format = in.Format
		case "enrollment":
			d.Enrollment = in.Enrollment
		case "sequential":
			d.Sequential = in.Sequential
		case "race_target_points":
			d.RaceTarget = in.RaceTarget
		case "league_target_points":
			d.LeagueTarget = in.LeagueTarget
		case "team_metric":
			d.TeamMetric = in.TeamMetric
		case "duration":
			d.Duration = in.Duration
		case "grace_period":
			d.Grace = in.Grace
		case "max_data_wait":
			d.MaxDataWait = in.MaxDataWait
		case "missions":
			d.Missions = in.Missions
		case "scoring_rules":
			d.Rules = in.Rules
		case "rewards":
			d.Rewards = in.Rewards
		default:
			return nil, rallye.Invalid("override_mask", "%q cannot be overridden", f)
		}
	}
	missions := slices.Clone(d.Missions)
	for i, a := range req.Adjustments {
		j := slices.IndexFunc(missions, func(m Mission) bool { return m.Key == a.Key })
		if j < 0 {
			return nil, rallye.Invalid(fmt.Sprintf("mission_adjustments[%d].key", i), "the template has no mission %q", a.Key)
		}
		switch {
		case a.Remove:
			missions = slices.Delete(missions, j, j+1)
			continue
		case a.Target != nil:
			missions[j].Target = *a.Target
		}
		if a.Points != nil {
			missions[j].Points = *a.Points
		}
		if a.MinVolume != nil {
			missions[j].MinVolume = *a.MinVolume
		}
	}
	d.Missions = missions
	return s.Create(ctx, p, CreateRequest{
		Definition: d, TeamIDs: req.TeamIDs, UserIDs: req.UserIDs, StartsAt: req.StartsAt, EndsAt: req.EndsAt,
		Publish: req.Publish, RequestID: req.RequestID, TemplateKey: req.TemplateKey, fingerprint: req,
	})
}
