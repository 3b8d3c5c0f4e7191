package event

import (
	"testing"
	"time"

	"github.com/rallyehq/rallye/internal/rallye"
)

func TestExpressions(t *testing.T) {
	paris, _ := time.LoadLocation("Europe/Paris")
	created := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	nine := int32(9)
	won := Event{Type: DealWon, Amount: 125050, DealKind: KindUpsell, Segment: "enterprise", Score: &nine,
		OccurredAt: time.Date(2026, 3, 11, 22, 30, 0, 0, time.UTC), OpportunityCreatedAt: created,
		Attributes: map[string]string{"region": "north"}}
	filters := []struct {
		src     string
		want    bool
		evalErr bool
	}{
		{`deal_kind == "upsell"`, true, false},
		{`segment in ["smb", "mid-market"]`, false, false},
		{`amount > 1250.0 && amount < 1251.0`, true, false},
		{`cycle_days == 10.5625`, true, false},
		{`hour == 23 && weekday == 3`, true, false}, // 22:30 UTC is 23:30 on Wednesday in Paris
		{`attributes["region"] == "north"`, true, false},
		{`attributes["missing"] == "x"`, false, true}, // an evaluation error does not match, and says so
		{`score >= 9`, true, false},
	}
	for _, f := range filters {
		x, err := CompileFilter("filter", f.src)
		if err != nil {
			t.Fatalf("%s: %v", f.src, err)
		}
		got, err := x.Matches(won, paris)
		if got != f.want || (err != nil) != f.evalErr {
			t.Errorf("%s = %v, %v; want %v (error: %v)", f.src, got, err, f.want, f.evalErr)
		}
	}
	v, err := CompileValue("value", `score >= 9 ? 1 : (score <= 6 ? -1 : 0)`)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := v.Value(won, paris); got != 1 {
		t.Errorf("nps value = %v", got)
	}
	for _, bad := range []string{`amount >`, `deal_kind`, `unknown_var == 1`} {
		if _, err := CompileFilter("filter", bad); rallye.ErrorCode(err) != rallye.CodeInvalid {
			t.Errorf("%q compiled: %v", bad, err)
		}
	}
	if x, _ := CompileFilter("filter", "  "); x != nil || !must(x.Matches(won, paris)) {
		t.Error("an empty filter must match everything")
	}
}

func must(ok bool, err error) bool { return ok && err == nil }
