package export_test

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/rallyehq/rallye/internal/export"
)

var columns = []string{"name", "note", "points", "rate", "ok", "at", "day", "empty"}

var at = time.Date(2026, 3, 1, 9, 30, 0, 0, time.FixedZone("CET", 3600))

// rows hold what breaks naive CSV writers: commas, quotes, line breaks,
// French accents and a formula.
var rows = [][]any{
	{"Hélène Dupré-Çaglar", `dit "bravo", puis`, int64(1200), 0.25, true, at, export.Date(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)), nil},
	{"Zoë Lefèvre", "ligne 1\nligne 2\r\nligne 3", 7, -1.5, false, time.Time{}, export.Date{}, nil},
	{"=HYPERLINK(\"x\")", "œuvre, été; à côté", int32(-3), 1e-7, true, at, nil, nil},
}

func TestCSVRoundTripsThroughAnRFC4180Reader(t *testing.T) {
	for _, bom := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "bom"}[bom], func(t *testing.T) {
			var buf bytes.Buffer
			flushes := 0
			w := export.NewWriter(&buf, columns, export.Options{Format: export.CSV, BOM: bom}, func() error { flushes++; return nil })
			for _, r := range rows {
				if err := w.Row(r...); err != nil {
					t.Fatal(err)
				}
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			raw := buf.String()
			if got := strings.HasPrefix(raw, "\uFEFF"); got != bom {
				t.Fatalf("starts with a BOM: %v, want %v", got, bom)
			}
			if flushes != 1 {
				t.Errorf("%d flushes for %d rows, want 1 (at close)", flushes, len(rows))
			}
			// Every record ends with CRLF (RFC 4180 §2.1); line breaks
			// inside a quoted field are kept as they came.
			if !strings.HasSuffix(raw, "\r\n") || !strings.Contains(raw, "name,note,points,rate,ok,at,day,empty\r\n") {
				t.Errorf("header or line ends wrong:\n%q", raw)
			}
			if !strings.Contains(raw, `"dit ""bravo"", puis"`) {
				t.Errorf("quotes not doubled inside a quoted field:\n%q", raw)
			}
			got, err := csv.NewReader(strings.NewReader(strings.TrimPrefix(raw, "\uFEFF"))).ReadAll()
			if err != nil {
				t.Fatal(err)
			}
			want := [][]string{
				columns,
				{"Hélène Dupré-Çaglar", `dit "bravo", puis`, "1200", "0.25", "true", "2026-03-01T08:30:00Z", "2026-03-01", ""},
				// encoding/csv's reader turns \r\n inside a field into \n.
				{"Zoë Lefèvre", "ligne 1\nligne 2\nligne 3", "7", "-1.5", "false", "", "", ""},
				{"'=HYPERLINK(\"x\")", "œuvre, été; à côté", "-3", "0.0000001", "true", "2026-03-01T08:30:00Z", "", ""},
			}
			if len(got) != len(want) {
				t.Fatalf("%d records, want %d", len(got), len(want))
			}
			for i := range want {
				if strings.Join(got[i], "|") != strings.Join(want[i], "|") {
					t.Errorf("record %d:\n got %q\nwant %q", i, got[i], want[i])
				}
			}
		})
	}
}

func TestJSONLinesAreTypedObjects(t *testing.T) {
	var buf bytes.Buffer
	// A BOM is for Excel's CSV only: never in JSON lines.
	w := export.NewWriter(&buf, columns, export.Options{Format: export.JSONLines, BOM: true}, nil)
	for _, r := range rows {
		if err := w.Row(r...); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != len(rows) {
		t.Fatalf("%d lines, want %d (no header in JSON lines): %q", len(lines), len(rows), buf.String())
	}
	var first map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"name": "Hélène Dupré-Çaglar", "note": `dit "bravo", puis`, "points": 1200.0, "rate": 0.25,
		"ok": true, "at": "2026-03-01T08:30:00Z", "day": "2026-03-01", "empty": nil}
	for k, v := range want {
		if first[k] != v {
			t.Errorf("%s = %#v, want %#v", k, first[k], v)
		}
	}
	var second map[string]any
	if err := json.Unmarshal([]byte(lines[1]), &second); err != nil {
		t.Fatal(err)
	}
	if second["note"] != "ligne 1\nligne 2\r\nligne 3" || second["at"] != nil || second["day"] != nil {
		t.Errorf("second line: %v", second)
	}
	// Formulas are a spreadsheet matter: JSON keeps the text as it is.
	var third map[string]any
	_ = json.Unmarshal([]byte(lines[2]), &third)
	if third["name"] != `=HYPERLINK("x")` {
		t.Errorf("third name: %q", third["name"])
	}
	if !strings.Contains(lines[0], "Hélène") {
		t.Errorf("accents escaped instead of written as UTF-8: %s", lines[0])
	}
}

func TestRowsAreFlushedEveryFlushEveryRows(t *testing.T) {
	var buf bytes.Buffer
	sizes := []int{}
	w := export.NewWriter(&buf, []string{"n"}, export.Options{}, func() error { sizes = append(sizes, buf.Len()); return nil })
	for i := range 2*export.FlushEvery + 1 {
		if err := w.Row(i); err != nil {
			t.Fatal(err)
		}
	}
	if len(sizes) != 2 || sizes[0] == 0 || sizes[1] <= sizes[0] {
		t.Fatalf("flushes at sizes %v, want two growing flushes before close", sizes)
	}
	if err := w.Row(1, 2); err == nil {
		t.Error("a row with more cells than columns was written")
	}
}
