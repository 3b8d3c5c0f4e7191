package event

import (
	"fmt"
	"math"
	"strings"
	"time"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/interpreter"

	"github.com/rallyehq/rallye/internal/rallye"
)

// Expressions over events are written in CEL (github.com/google/cel-go),
// with these variables:
//
//	type, source, segment, product, deal_kind, stage, from_stage, channel,
//	account_id, opportunity_id, lead_id, content_id            string
//	amount, gross_margin     double, in major units (12.50 for 1250 cents)
//	score                    int (-1 when absent)
//	discovery_completed      bool
//	cycle_days               double: deal closing time (won/lost), else 0
//	stage_days               double: time spent in from_stage, else 0
//	response_hours           double: lead creation to first contact, else 0
//	resolution_hours         double: ticket opening to resolution, else 0
//	hour, weekday            int: local hour (0-23) and ISO weekday (1 Monday)
//	                         of occurred_at in the company's time zone
//	attributes               map(string, string)
//
// Examples: `deal_kind == "upsell"`, `segment in ["mid-market", "enterprise"]`,
// `amount >= 1200.0`, `score >= 9 ? 1.0 : (score <= 6 ? -1.0 : 0.0)`.
var exprVariables = []cel.EnvOption{
	cel.Variable("type", cel.StringType), cel.Variable("source", cel.StringType),
	cel.Variable("segment", cel.StringType), cel.Variable("product", cel.StringType),
	cel.Variable("deal_kind", cel.StringType), cel.Variable("stage", cel.StringType),
	cel.Variable("from_stage", cel.StringType), cel.Variable("channel", cel.StringType),
	cel.Variable("account_id", cel.StringType), cel.Variable("opportunity_id", cel.StringType),
	cel.Variable("lead_id", cel.StringType), cel.Variable("content_id", cel.StringType),
	cel.Variable("amount", cel.DoubleType), cel.Variable("gross_margin", cel.DoubleType),
	cel.Variable("score", cel.IntType), cel.Variable("discovery_completed", cel.BoolType),
	cel.Variable("cycle_days", cel.DoubleType), cel.Variable("stage_days", cel.DoubleType),
	cel.Variable("response_hours", cel.DoubleType), cel.Variable("resolution_hours", cel.DoubleType),
	cel.Variable("hour", cel.IntType), cel.Variable("weekday", cel.IntType),
	cel.Variable("attributes", cel.MapType(cel.StringType, cel.StringType)),
}

var exprEnv = func() *cel.Env {
	env, err := cel.NewEnv(exprVariables...)
	if err != nil {
		panic(err) // static declarations: cannot fail at run time
	}
	return env
}()

// Expr is a compiled CEL expression over an event.
type Expr struct {
	Source string
	prog   cel.Program
	kind   *cel.Type
}

// CompileFilter compiles a boolean expression ("" matches every event).
// Errors are CodeInvalid on field, with CEL's message.
func CompileFilter(field, src string) (*Expr, error) {
	if strings.TrimSpace(src) == "" {
		return nil, nil
	}
	return compile(field, src, cel.BoolType)
}

// CompileValue compiles a numeric expression (double or int).
func CompileValue(field, src string) (*Expr, error) {
	return compile(field, src, cel.DoubleType, cel.IntType)
}

func compile(field, src string, want ...*cel.Type) (*Expr, error) {
	ast, iss := exprEnv.Compile(src)
	if iss.Err() != nil {
		return nil, rallye.Invalid(field, "%s", iss.Err())
	}
	ok := false
	for _, w := range want {
		if ast.OutputType().IsExactType(w) {
			ok = true
		}
	}
	if !ok {
		return nil, rallye.Invalid(field, "must give a %s, gives %s", want[0], ast.OutputType())
	}
	prog, err := exprEnv.Program(ast, cel.EvalOptions(cel.OptOptimize))
	if err != nil {
		return nil, rallye.Invalid(field, "%s", err)
	}
	return &Expr{Source: src, prog: prog, kind: ast.OutputType()}, nil
}

// Matches evaluates a filter for e, with tz the company's time zone (for
// hour and weekday); a nil filter matches everything. An evaluation error
// (a missing attribute key...) does not match, and is returned so that the
// caller reports it (see RuleError).
func (x *Expr) Matches(e Event, tz *time.Location) (bool, error) {
	if x == nil {
		return true, nil
	}
	out, _, err := x.prog.Eval(&activation{e: &e, tz: tz})
	if err != nil {
		return false, fmt.Errorf("expression %q: %w", x.Source, err)
	}
	b, ok := out.Value().(bool)
	if !ok {
		return false, fmt.Errorf("expression %q gave %v, not a bool", x.Source, out.Type())
	}
	return b, nil
}

// Value evaluates a numeric expression; errors and non-finite results are
// reported so that callers can skip the event.
func (x *Expr) Value(e Event, tz *time.Location) (float64, error) {
	out, _, err := x.prog.Eval(&activation{e: &e, tz: tz})
	if err != nil {
		return 0, fmt.Errorf("expression %q: %w", x.Source, err)
	}
	var v float64
	switch n := out.(type) {
	case types.Double:
		v = float64(n)
	case types.Int:
		v = float64(n)
	default:
		return 0, fmt.Errorf("expression %q gave %v", x.Source, out.Type())
	}
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, fmt.Errorf("expression %q is not finite", x.Source)
	}
	return v, nil
}

// activation resolves variables from the event lazily, without building a
// map per evaluation.
type activation struct {
	e  *Event
	tz *time.Location
}

func (a *activation) Parent() interpreter.Activation { return nil }

func (a *activation) ResolveName(name string) (any, bool) {
	e := a.e
	switch name {
	case "type":
		return string(e.Type), true
	case "source":
		return e.Source, true
	case "segment":
		return e.Segment, true
	case "product":
		return e.Product, true
	case "deal_kind":
		return e.DealKind, true
	case "stage":
		return e.Stage, true
	case "from_stage":
		return e.FromStage, true
	case "channel":
		return e.Channel, true
	case "account_id":
		return e.AccountID, true
	case "opportunity_id":
		return e.OpportunityID, true
	case "lead_id":
		return e.LeadID, true
	case "content_id":
		return e.ContentID, true
	case "amount":
		return float64(e.Amount) / 100, true
	case "gross_margin":
		return float64(e.GrossMargin) / 100, true
	case "score":
		if e.Score == nil {
			return int64(-1), true
		}
		return int64(*e.Score), true
	case "discovery_completed":
		return e.DiscoveryCompleted, true
	case "cycle_days":
		if e.IsClosing() && !e.OpportunityCreatedAt.IsZero() {
			return e.CycleDays(), true
		}
		return 0.0, true
	case "stage_days":
		if !e.StageEnteredAt.IsZero() {
			return e.OccurredAt.Sub(e.StageEnteredAt).Hours() / 24, true
		}
		return 0.0, true
	case "response_hours":
		if !e.LeadCreatedAt.IsZero() {
			return e.OccurredAt.Sub(e.LeadCreatedAt).Hours(), true
		}
		return 0.0, true
	case "resolution_hours":
		if !e.TicketOpenedAt.IsZero() {
			return e.OccurredAt.Sub(e.TicketOpenedAt).Hours(), true
		}
		return 0.0, true
	case "hour", "weekday":
		local := e.OccurredAt
		if a.tz != nil {
			local = local.In(a.tz)
		}
		if name == "hour" {
			return int64(local.Hour()), true
		}
		return int64((int(local.Weekday())+6)%7 + 1), true
	case "attributes":
		if e.Attributes == nil {
			return map[string]string{}, true
		}
		return e.Attributes, true
	}
	return nil, false
}
