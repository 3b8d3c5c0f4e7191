package kpi

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"

	"github.com/rallyehq/rallye/internal/idempotency"
	"github.com/rallyehq/rallye/internal/postgres"
	"github.com/rallyehq/rallye/internal/rallye"
)

// CreateRequest creates a KPI.
type CreateRequest struct {
	Definition Definition
	// RequestID makes the call safe to retry.
	RequestID string
}

// Create creates a KPI with its first version; without an owner, the
// caller (or the first admin for an API key) owns it. Errors: CodeInvalid (a
// field), CodeAlreadyExists (key), CodeNotFound (owner, scope team, a KPI a
// composite reads), CodeFailedPrecondition (a deactivated owner or team).
func (s *Service) Create(ctx context.Context, p rallye.Principal, req CreateRequest) (KPI, error) {
	if err := req.Definition.validate("kpi."); err != nil {
		return KPI{}, err
	}
	var out KPI
	err := s.db.InTenant(ctx, p.TenantID, func(tx pgx.Tx) error {
		id, fresh, err := idempotency.Claim(ctx, tx, idempotency.Key{
			Caller: p, Operation: "CreateKpi", RequestID: req.RequestID, Request: req.Definition,
		}, newID())
		if err != nil {
			return err
		}
		if !fresh {
			out, err = loadKPIByID(ctx, tx, p.TenantID, id)
			return err
		}
		all, err := loadKPIs(ctx, tx, p.TenantID)
		if err != nil {
			return err
		}
		if _, taken := all[req.Definition.Key]; taken {
			return &rallye.Error{Code: rallye.CodeAlreadyExists, Field: "kpi.key", Message: "is used by another KPI"}
		}
		if err := s.create(ctx, tx, p, id, req.Definition, all); err != nil {
			return err
		}
		out, err = loadKPIByID(ctx, tx, p.TenantID, id)
		return err
	})
	return out, err
}

func (s *Service) create(ctx context.Context, tx pgx.Tx, p rallye.Principal, id uuid.UUID, d Definition, all map[string]KPI) error {
	if d.OwnerID == uuid.Nil {
		var err error
		if d.OwnerID, err = defaultOwner(ctx, tx, p); err != nil {
			return err
		}
	}
	if err := checkReferences(ctx, tx, p.TenantID, d, all, "kpi."); err != nil {
		return err
	}
	_, err := tx.Exec(ctx, `INSERT INTO kpi_definitions (tenant_id, id, key) VALUES ($1, $2, $3)`, p.TenantID, id, d.Key)
	if postgres.IsUniqueViolation(err, "kpi_definitions_key_key") {
		return &rallye.Error{Code: rallye.CodeAlreadyExists, Field: "kpi.key", Message: "is used by another KPI"}
	}
	if err != nil {
		return fmt.Errorf("insert kpi: %w", err)
	}
	return s.insertVersion(ctx, tx, p, id, 1, Beginning, d)
}

// Beginning is the first version's effective time: it applies to the whole
// history, so a new KPI shows its past at once.
var Beginning = time.Unix(0, 0).UTC()

func (s *Service) insertVersion(ctx context.Context, tx pgx.Tx, p rallye.Principal, kpiID uuid.UUID, n int, from time.Time, d Definition) error {
	b, err := json.Marshal(d)
	if err != nil {
		return err
	}
	var by *uuid.UUID
	if p.UserID != uuid.Nil {
		by = &p.UserID
	}
	if _, err := tx.Exec(ctx, `INSERT INTO kpi_versions (tenant_id, kpi_id, version, effective_from, definition, owner_id, created_by)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`, p.TenantID, kpiID, n, from, b, d.OwnerID, by); err != nil {
		return fmt.Errorf("insert kpi version: %w", err)
	}
	return s.ensureMeasures(ctx, tx, p.TenantID, d)
}

// ensureMeasures records the definition's measures; a measure the company
// does not have yet gets a backfill job, in this transaction.
func (s *Service) ensureMeasures(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, d Definition) error {
	pl, err := compilePlan(d)
	if err != nil {
		return err
	}
	for _, m := range pl.measures() {
		spec, err := json.Marshal(m)
		if err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `INSERT INTO kpi_measures (tenant_id, id, spec) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`,
			tenantID, m.ID(), spec)
		if err != nil {
			return fmt.Errorf("insert measure: %w", err)
		}
		if tag.RowsAffected() == 1 {
			if err := s.insertJob(ctx, tx, BackfillArgs{TenantID: tenantID, MeasureID: m.ID()},
				&river.InsertOpts{UniqueOpts: river.UniqueOpts{ByArgs: true}}); err != nil {
				return fmt.Errorf("enqueue backfill: %w", err)
			}
		}
	}
	return nil
}

// checkReferences checks what a definition names: its owner, its team, the
// KPIs a composite reads (existing, without a cycle).
func checkReferences(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, d Definition, all map[string]KPI, prefix string) error {
	if slices.Contains(celReserved, d.Key) {
		return rallye.Invalid(prefix+"key", "%q is a reserved word", d.Key)
	}
	var active bool
	err := tx.QueryRow(ctx, `SELECT active FROM users WHERE tenant_id = $1 AND id = $2`, tenantID, d.OwnerID).Scan(&active)
	if postgres.IsNoRows(err) {
		return &rallye.Error{Code: rallye.CodeNotFound, Field: prefix + "owner_id", Message: "no such person in the company"}
	}
	if err != nil {
		return err
	}
	if !active {
		return &rallye.Error{Code: rallye.CodeFailedPrecondition, Field: prefix + "owner_id", Message: "the owner is deactivated"}
	}
	if d.Scope.TeamID != uuid.Nil {
		err := tx.QueryRow(ctx, `SELECT active FROM teams WHERE tenant_id = $1 AND id = $2`, tenantID, d.Scope.TeamID).Scan(&active)
		if postgres.IsNoRows(err) {
			return &rallye.Error{Code: rallye.CodeNotFound, Field: prefix + "scope.team_id", Message: "no such team in the company"}
		}
		if err != nil {
			return err
		}
	}
	if d.Formula.Aggregation != Composite {
		return nil
	}
	refs, err := compositeRefs(prefix+"formula.expression", d.Formula.Expression)
	if err != nil {
		return err
	}
	if _, _, err := compileComposite(prefix+"formula.expression", d.Formula.Expression); err != nil {
		return err
	}
	graph := map[string][]string{}
	for key, k := range all {
		if f := k.Current().Definition.Formula; f.Aggregation == Composite {
			graph[key], _ = compositeRefs("", f.Expression)
		}
	}
	graph[d.Key] = refs
	for _, r := range refs {
		if _, ok := all[r]; !ok && r != d.Key {
			return &rallye.Error{Code: rallye.CodeNotFound, Field: prefix + "formula.expression", Message: fmt.Sprintf("no KPI has the key %q", r)}
		}
	}
	if cyclic(graph, d.Key) {
		return rallye.Invalid(prefix+"formula.expression", "reads itself, directly or through other KPIs")
	}
	return nil
}

func cyclic(graph map[string][]string, from string) bool {
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(string) bool
	visit = func(k string) bool {
		switch state[k] {
		case 1:
			return true
		case 2:
			return false
		}
		state[k] = 1
		for _, r := range graph[k] {
			if visit(r) {
				return true
			}
		}
		state[k] = 2
		return false
	}
	return visit(from)
}

// UpdateRequest adds a version to a KPI.
type UpdateRequest struct {
	Key        string
	Definition Definition
	// EffectiveFrom is when the version starts applying (zero: now); it
	// must come after the current version's. Periods ending after it are
	// read with the new version, earlier ones keep the old: setting it in the
	// past deliberately recomputes the periods since.
	EffectiveFrom time.Time
}

// Update adds a version. Errors as Create, and CodeNotFound for the KPI.
func (s *Service) Update(ctx context.Context, p rallye.Principal, req UpdateRequest) (KPI, error) {
	if req.Definition.Key == "" {
		req.Definition.Key = req.Key
	}
	if req.Definition.Key != req.Key {
		return KPI{}, rallye.Invalid("kpi.key", "cannot change: create another KPI")
	}
	if err := req.Definition.validate("kpi."); err != nil {
		return KPI{}, err
	}
	from := req.EffectiveFrom
	if from.IsZero() {
		from = s.Now()
	}
	var out KPI
	err := s.db.InTenant(ctx, p.TenantID, func(tx pgx.Tx) error {
		all, err := loadKPIs(ctx, tx, p.TenantID)
		if err != nil {
			return err
		}
		k, ok := all[req.Key]
		if !ok {
			return rallye.NotFound("KPI")
		}
		if _, err := tx.Exec(ctx, `SELECT 1 FROM kpi_definitions WHERE tenant_id = $1 AND id = $2 FOR UPDATE`, p.TenantID, k.ID); err != nil {
			return err
		}
		cur := k.Current()
		if req.Definition.OwnerID == uuid.Nil {
			req.Definition.OwnerID = cur.Definition.OwnerID
		}
		if !from.After(cur.EffectiveFrom) {
			return rallye.Invalid("effective_from", "must be after the current version's (%s)", cur.EffectiveFrom.Format(time.RFC3339))
		}
		if err := checkReferences(ctx, tx, p.TenantID, req.Definition, all, "kpi."); err != nil {
			return err
		}
		if err := s.insertVersion(ctx, tx, p, k.ID, cur.Number+1, from, req.Definition); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE kpi_definitions SET updated_at = now() WHERE tenant_id = $1 AND id = $2`, p.TenantID, k.ID); err != nil {
			return err
		}
		out, err = loadKPIByID(ctx, tx, p.TenantID, k.ID)
		return err
	})
	return out, err
}

// SetArchived hides a KPI from dashboards (or shows it again). Its
// roll-ups keep being maintained, so unarchiving loses nothing.
func (s *Service) SetArchived(ctx context.Context, p rallye.Principal, key string, archived bool) (KPI, error) {
	var out KPI
	err := s.db.InTenant(ctx, p.TenantID, func(tx pgx.Tx) error {
		var id uuid.UUID
		err := tx.QueryRow(ctx, `UPDATE kpi_definitions SET archived = $3, updated_at = now()
			WHERE tenant_id = $1 AND key = $2 RETURNING id`, p.TenantID, key, archived).Scan(&id)
		if postgres.IsNoRows(err) {
			return rallye.NotFound("KPI")
		}
		if err != nil {
			return err
		}
		out, err = loadKPIByID(ctx, tx, p.TenantID, id)
		return err
	})
	return out, err
}

// Get returns one KPI with its versions.
func (s *Service) Get(ctx context.Context, p rallye.Principal, key string) (KPI, error) {
	var out KPI
	err := s.db.ReadTenant(ctx, p.TenantID, func(tx pgx.Tx) error {
		all, err := loadKPIs(ctx, tx, p.TenantID)
		if err != nil {
			return err
		}
		k, ok := all[key]
		if !ok {
			return rallye.NotFound("KPI")
		}
		out = k
		return nil
	})
	return out, err
}

// ListRequest selects KPIs.
type ListRequest struct {
	// Level keeps one level (0: all).
	Level           int
	IncludeArchived bool
}

// List returns the company's KPIs by level, then key.
func (s *Service) List(ctx context.Context, p rallye.Principal, req ListRequest) ([]KPI, error) {
	var out []KPI
	err := s.db.ReadTenant(ctx, p.TenantID, func(tx pgx.Tx) error {
		all, err := loadKPIs(ctx, tx, p.TenantID)
		if err != nil {
			return err
		}
		out = filterKPIs(all, req.Level, req.IncludeArchived)
		return nil
	})
	return out, err
}

func filterKPIs(all map[string]KPI, level int, archived bool) []KPI {
	var out []KPI
	for _, k := range all {
		if (k.Archived && !archived) || (level != 0 && k.Current().Definition.Level != level) {
			continue
		}
		out = append(out, k)
	}
	slices.SortFunc(out, func(a, b KPI) int {
		if la, lb := a.Current().Definition.Level, b.Current().Definition.Level; la != lb {
			return la - lb
		}
		if ia, ib := modelRank(a.Key), modelRank(b.Key); ia != ib {
			return ia - ib
		}
		if a.Key < b.Key {
			return -1
		}
		return 1
	})
	return out
}

const kpiColumns = `d.id, d.key, d.archived, d.created_at, d.updated_at, v.version, v.effective_from, v.definition,
	coalesce(v.created_by, '00000000-0000-0000-0000-000000000000'), v.created_at`

func scanKPIs(rows pgx.Rows) (map[string]KPI, error) {
	defer rows.Close()
	out := map[string]KPI{}
	for rows.Next() {
		var k KPI
		var v Version
		var raw []byte
		if err := rows.Scan(&k.ID, &k.Key, &k.Archived, &k.CreatedAt, &k.UpdatedAt, &v.Number, &v.EffectiveFrom, &raw,
			&v.CreatedBy, &v.CreatedAt); err != nil {
			return nil, err
		}
		if err := json.Unmarshal(raw, &v.Definition); err != nil {
			return nil, fmt.Errorf("kpi %s version %d: %w", k.Key, v.Number, err)
		}
		if prev, ok := out[k.Key]; ok {
			k.Versions = prev.Versions
		}
		k.Versions = append(k.Versions, v)
		out[k.Key] = k
	}
	return out, rows.Err()
}

// loadKPIs returns every KPI of the company with its versions.
func loadKPIs(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID) (map[string]KPI, error) {
	rows, err := tx.Query(ctx, `SELECT `+kpiColumns+` FROM kpi_definitions d
		JOIN kpi_versions v ON v.tenant_id = d.tenant_id AND v.kpi_id = d.id
		WHERE d.tenant_id = $1 ORDER BY d.key, v.version`, tenantID)
	if err != nil {
		return nil, fmt.Errorf("read kpis: %w", err)
	}
	return scanKPIs(rows)
}

func loadKPIByID(ctx context.Context, tx pgx.Tx, tenantID, id uuid.UUID) (KPI, error) {
	rows, err := tx.Query(ctx, `SELECT `+kpiColumns+` FROM kpi_definitions d
		JOIN kpi_versions v ON v.tenant_id = d.tenant_id AND v.kpi_id = d.id
		WHERE d.tenant_id = $1 AND d.id = $2 ORDER BY v.version`, tenantID, id)
	if err != nil {
		return KPI{}, fmt.Errorf("read kpi: %w", err)
	}
	all, err := scanKPIs(rows)
	if err != nil {
		return KPI{}, err
	}
	for _, k := range all {
		return k, nil
	}
	return KPI{}, rallye.NotFound("KPI")
}

// InstallResult tells what InstallModel did.
type InstallResult struct {
	Created []string
	// Kept are model keys the company already had (left as they are).
	Kept []string
}

// InstallModel installs the seed article's ready-to-use model (Model) in one
// transaction: every KPI whose key the company does not have yet is created,
// owned by owner; existing keys are left alone, so installing again changes
// nothing.
func (s *Service) InstallModel(ctx context.Context, p rallye.Principal, owner uuid.UUID) (InstallResult, error) {
	var res InstallResult
	err := s.db.InTenant(ctx, p.TenantID, func(tx pgx.Tx) error {
		res = InstallResult{}
		if owner != uuid.Nil {
			var exists bool
			if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM users WHERE tenant_id = $1 AND id = $2)`,
				p.TenantID, owner).Scan(&exists); err != nil {
				return err
			}
			if !exists {
				return &rallye.Error{Code: rallye.CodeNotFound, Field: "owner_id", Message: "no such person in the company"}
			}
		}
		if owner == uuid.Nil {
			var err error
			if owner, err = defaultOwner(ctx, tx, p); err != nil {
				return err
			}
		}
		all, err := loadKPIs(ctx, tx, p.TenantID)
		if err != nil {
			return err
		}
		for _, d := range Model() {
			if _, ok := all[d.Key]; ok {
				res.Kept = append(res.Kept, d.Key)
				continue
			}
			d.OwnerID = owner
			if err := d.validate("model."); err != nil {
				return fmt.Errorf("seed model %s: %w", d.Key, err)
			}
			id := newID()
			if err := s.create(ctx, tx, p, id, d, all); err != nil {
				if e, ok := rallye.AsError(err); ok && e.Field == "kpi.owner_id" {
					e.Field = "owner_id"
				}
				return err
			}
			all[d.Key] = KPI{ID: id, Key: d.Key, Versions: []Version{{Number: 1, Definition: d}}}
			res.Created = append(res.Created, d.Key)
		}
		return nil
	})
	return res, err
}

// defaultOwner is the caller when a person, else the company's first active
// admin.
func defaultOwner(ctx context.Context, tx pgx.Tx, p rallye.Principal) (uuid.UUID, error) {
	if p.UserID != uuid.Nil {
		return p.UserID, nil
	}
	var id uuid.UUID
	err := tx.QueryRow(ctx, `SELECT id FROM users WHERE tenant_id = $1 AND active AND 'admin' = ANY(roles)
		ORDER BY created_at, id LIMIT 1`, p.TenantID).Scan(&id)
	if postgres.IsNoRows(err) {
		return uuid.Nil, rallye.Invalid("owner_id", "is required: the company has no active admin to own the KPIs")
	}
	return id, err
}
