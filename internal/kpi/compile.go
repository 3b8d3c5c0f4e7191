package kpi

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"cel.dev/cel-go/cel"
	celast "cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/types"
	"github.com/google/uuid"

	"github.com/rallyehq/rallye/internal/event"
	"github.com/rallyehq/rallye/internal/rallye"
)

// MeasureKind is how a measure is rolled up.
type MeasureKind string

// Measure kinds.
const (
	// MeasureSums keeps a count and a sum (kpi_sums).
	MeasureSums MeasureKind = "sums"
	// MeasureValues keeps how many events gave each value (kpi_values).
	MeasureValues MeasureKind = "values"
	// MeasureKeys keeps the distinct keys seen (kpi_keys).
	MeasureKeys MeasureKind = "keys"
)

// MeasureSpec is a base measure: which events, what each contributes, and
// the breakdown. Its ID is a hash of its JSON, so identical measures of
// different KPIs (or versions) are computed once, and a changed formula
// yields a new measure.
type MeasureSpec struct {
	Kind   MeasureKind   `json:"kind"`
	Types  []event.Type  `json:"types"`
	Filter string        `json:"filter,omitempty"`
	Value  string        `json:"value,omitempty"`
	Key    DistinctField `json:"key,omitempty"`
	Dim    Dimension     `json:"dim,omitempty"`
}

// ID identifies the measure.
func (m MeasureSpec) ID() uuid.UUID {
	b, _ := json.Marshal(m) // plain strings: cannot fail
	h := sha256.Sum256(b)
	var id uuid.UUID
	copy(id[:], h[:16])
	id[6] = id[6]&0x0f | 0x80 // RFC 9562 version 8 (custom)
	id[8] = id[8]&0x3f | 0x80
	return id
}

// plan is a compiled KPI version: the measures it reads and how it combines
// them.
type plan struct {
	def      Definition
	num, den *MeasureSpec
	numID    uuid.UUID
	denID    uuid.UUID
	// refs are the KPI keys a composite reads.
	refs []string
	prog cel.Program
	// companyOnly: a side of the formula reads only company-wide events
	// (companyOnlyTypes), so the KPI has no meaning for a team or a person.
	companyOnly bool
}

// companyOnlyTypes are the event types that belong to the company alone:
// they are rolled up for the company scope only, even when they name a rep
// (marketing spend is the marketing tool's, not a rep's). A KPI with a side
// made only of them is not applicable below the company.
var companyOnlyTypes = map[event.Type]bool{event.MarketingSpend: true}

// onlyCompanyWide tells whether every event type of m is company-wide.
func onlyCompanyWide(m *MeasureSpec) bool {
	if m == nil || len(m.Types) == 0 {
		return false
	}
	for _, t := range m.Types {
		if !companyOnlyTypes[t] {
			return false
		}
	}
	return true
}

func joinFilters(parts ...string) string {
	var kept []string
	for _, p := range parts {
		if strings.TrimSpace(p) != "" {
			kept = append(kept, "("+p+")")
		}
	}
	return strings.Join(kept, " && ")
}

func measureOf(kind MeasureKind, sel Selection, scope Scope, dim Dimension) *MeasureSpec {
	types := slices.Clone(sel.Types)
	slices.Sort(types)
	types = slices.Compact(types)
	segment := ""
	if scope.Segment != "" {
		segment = "segment == " + strconv.Quote(scope.Segment)
	}
	m := &MeasureSpec{Kind: kind, Types: types, Filter: joinFilters(scope.Filter, segment, sel.Filter), Dim: dim}
	switch kind {
	case MeasureKeys:
		m.Key = sel.Distinct
	default:
		m.Value = sel.Value
	}
	return m
}

func sideMeasure(sel Selection, scope Scope, dim Dimension) *MeasureSpec {
	if sel.Distinct != "" {
		return measureOf(MeasureKeys, sel, scope, dim)
	}
	return measureOf(MeasureSums, sel, scope, dim)
}

// compilePlan compiles a validated definition.
func compilePlan(d Definition) (*plan, error) {
	p := &plan{def: d}
	f := d.Formula
	switch f.Aggregation {
	case Count, Sum, Average, Balance:
		p.num = measureOf(MeasureSums, f.Events, d.Scope, f.Breakdown)
	case Median, Percentile:
		p.num = measureOf(MeasureValues, f.Events, d.Scope, f.Breakdown)
	case Distinct:
		p.num = measureOf(MeasureKeys, f.Events, d.Scope, f.Breakdown)
	case Ratio:
		p.num = sideMeasure(f.Events, d.Scope, f.Breakdown)
		p.den = sideMeasure(*f.Denominator, d.Scope, f.Breakdown)
	case Composite:
		prog, refs, err := compileComposite("formula.expression", f.Expression)
		if err != nil {
			return nil, err
		}
		p.prog, p.refs = prog, refs
		return p, nil
	default:
		return nil, fmt.Errorf("kpi %s: unknown aggregation %q", d.Key, f.Aggregation)
	}
	p.numID = p.num.ID()
	if p.den != nil {
		p.denID = p.den.ID()
	}
	p.companyOnly = onlyCompanyWide(p.num) || onlyCompanyWide(p.den)
	return p, nil
}

// measures returns the plan's measures.
func (p *plan) measures() []*MeasureSpec {
	var out []*MeasureSpec
	if p.num != nil {
		out = append(out, p.num)
	}
	if p.den != nil {
		out = append(out, p.den)
	}
	return out
}

// celReserved are words CEL reserves: KPI keys may not be one of them, as
// composites name KPIs by key.
var celReserved = []string{"in", "as", "break", "const", "continue", "else", "false", "for", "function", "if",
	"import", "let", "loop", "package", "namespace", "null", "return", "true", "var", "void", "while"}

var compositeParser = func() *cel.Env {
	env, err := cel.NewEnv()
	if err != nil {
		panic(err)
	}
	return env
}()

// compositeRefs returns the identifiers an expression reads.
func compositeRefs(field, src string) ([]string, error) {
	ast, iss := compositeParser.Parse(src)
	if iss.Err() != nil {
		return nil, rallye.Invalid(field, "%s", iss.Err())
	}
	var refs []string
	celast.PreOrderVisit(ast.NativeRep().Expr(), celast.NewExprVisitor(func(e celast.Expr) {
		if e.Kind() == celast.IdentKind && !slices.Contains(refs, e.AsIdent()) {
			refs = append(refs, e.AsIdent())
		}
	}))
	slices.Sort(refs)
	return refs, nil
}

// compileComposite compiles a composite: every identifier is a KPI value
// (a double).
func compileComposite(field, src string) (cel.Program, []string, error) {
	refs, err := compositeRefs(field, src)
	if err != nil {
		return nil, nil, err
	}
	if len(refs) == 0 {
		return nil, nil, rallye.Invalid(field, "must read at least one KPI")
	}
	opts := make([]cel.EnvOption, len(refs))
	for i, r := range refs {
		opts[i] = cel.Variable(r, cel.DoubleType)
	}
	env, err := cel.NewEnv(opts...)
	if err != nil {
		return nil, nil, rallye.Invalid(field, "%s", err)
	}
	ast, iss := env.Compile(src)
	if iss.Err() != nil {
		return nil, nil, rallye.Invalid(field, "%s", iss.Err())
	}
	if !ast.OutputType().IsExactType(cel.DoubleType) {
		return nil, nil, rallye.Invalid(field, "must give a double (write 2.0, not 2), gives %s", ast.OutputType())
	}
	prog, err := env.Program(ast)
	if err != nil {
		return nil, nil, rallye.Invalid(field, "%s", err)
	}
	return prog, refs, nil
}

// evalComposite evaluates a composite; a missing input, an error or a
// non-finite result (a division by zero) gives no value.
func (p *plan) evalComposite(inputs map[string]*float64) *float64 {
	vars := make(map[string]any, len(p.refs))
	for _, r := range p.refs {
		v := inputs[r]
		if v == nil {
			return nil
		}
		vars[r] = *v
	}
	out, _, err := p.prog.Eval(vars)
	if err != nil {
		return nil
	}
	d, ok := out.(types.Double)
	if !ok || math.IsNaN(float64(d)) || math.IsInf(float64(d), 0) {
		return nil
	}
	v := float64(d)
	return &v
}

// compiledMeasure is a measure ready to evaluate events.
type compiledMeasure struct {
	id     uuid.UUID
	spec   MeasureSpec
	filter *event.Expr
	value  *event.Expr
}

// compileMeasure compiles a measure (the service's compiler caches it).
func compileMeasure(spec MeasureSpec) (*compiledMeasure, error) {
	m := &compiledMeasure{id: spec.ID(), spec: spec}
	var err error
	if m.filter, err = event.CompileFilter("filter", spec.Filter); err != nil {
		return nil, err
	}
	if spec.Value != "" {
		if m.value, err = event.CompileValue("value", spec.Value); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// contribution is what one event gives a measure.
type contribution struct {
	value float64
	key   string
	dim   string
}

// evaluate returns the event's contribution, or false when the event does
// not count for the measure; err reports a filter or value that could not
// be evaluated (the event then does not count for the measure).
func (m *compiledMeasure) evaluate(e *event.Event, loc *time.Location) (contribution, bool, error) {
	if !slices.Contains(m.spec.Types, e.Type) {
		return contribution{}, false, nil
	}
	if ok, err := m.filter.Matches(*e, loc); !ok {
		return contribution{}, false, err
	}
	c := contribution{value: 1, dim: dimensionOf(m.spec.Dim, e)}
	switch m.spec.Kind {
	case MeasureKeys:
		c.key = keyOf(m.spec.Key, e)
		if c.key == "" {
			return c, false, nil
		}
	default:
		if m.value != nil {
			v, err := m.value.Value(*e, loc)
			if err != nil {
				return c, false, err
			}
			c.value = v
		}
	}
	return c, true, nil
}

func dimensionOf(d Dimension, e *event.Event) string {
	switch d {
	case DimSegment:
		return e.Segment
	case DimProduct:
		return e.Product
	case DimStage:
		return e.Stage
	case DimFromStage:
		return e.FromStage
	case DimChannel:
		return e.Channel
	case DimDealKind:
		return e.DealKind
	case DimSource:
		return e.Source
	case DimContent:
		return e.ContentID
	case DimEventType:
		return string(e.Type)
	}
	return ""
}

func keyOf(f DistinctField, e *event.Event) string {
	switch f {
	case DistinctRep:
		if e.UserID != uuid.Nil {
			return e.UserID.String()
		}
	case DistinctAccount:
		return e.AccountID
	case DistinctOpportunity:
		return e.OpportunityID
	case DistinctLead:
		return e.LeadID
	case DistinctContent:
		return e.ContentID
	}
	return ""
}
