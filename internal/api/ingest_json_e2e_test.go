package api_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/rallyehq/rallye/internal/api"
	"github.com/rallyehq/rallye/internal/auth"
	"github.com/rallyehq/rallye/internal/testutil/testserver"
)

// postJSON sends body to path with an API key and returns the status and
// the raw answer, so that tests can see what a JSON client sees (which
// fields are present, not only what a generated client decodes).
func postJSON(t *testing.T, srv *testserver.Server, path, key, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+key)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, string(b)
}

// TestRowErrorIndexZeroInJSON: the first row of a batch is index 0, and a
// JSON client sees {"index": 0} rather than a missing field (issue 15 item 5).
func TestRowErrorIndexZeroInJSON(t *testing.T) {
	srv := testserver.Start(t)
	ctx := context.Background()
	acme := testserver.NewCompany(t, srv.App.Org)
	_, key, err := srv.App.APIKeys.Create(ctx, acme.Operator, auth.CreateAPIKeyRequest{Name: "crm"})
	if err != nil {
		t.Fatal(err)
	}
	// Both rows are refused: the first lacks opportunity_id, the second too.
	bad := func(id string) string {
		return `{"source":"crm","externalId":"` + id + `","type":"deal.won","occurredAt":"2026-03-03T10:00:00Z","repId":"` + acme.Admin.ID.String() + `"}`
	}
	events := `[` + bad("r0") + `,` + bad("r1") + `]`
	for _, tc := range []struct{ name, path, body string }{
		{"IngestEvents", "/rallye.v1.EventService/IngestEvents", `{"events":` + events + `}`},
		{"Webhook", api.WebhookPath, events},
		{"ImportUsers", "/rallye.v1.OrganizationService/ImportUsers", `{"users":[{"displayName":"No Mail","externalId":"x-0"},{"displayName":"No Mail","externalId":"x-1"}]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body := postJSON(t, srv, tc.path, key, tc.body)
			if tc.name == "ImportUsers" {
				status, body = postJSON(t, srv, tc.path, acme.AdminToken, tc.body)
			}
			if status != http.StatusOK {
				t.Fatalf("status %d: %s", status, body)
			}
			var out struct {
				Rejected []map[string]any `json:"rejected"`
			}
			if err := json.Unmarshal([]byte(body), &out); err != nil {
				t.Fatal(err)
			}
			if len(out.Rejected) != 2 {
				t.Fatalf("want 2 rejected rows: %s", body)
			}
			for i, r := range out.Rejected {
				if idx, ok := r["index"]; !ok || idx != float64(i) {
					t.Fatalf("row %d: index = %v (present %v) in %s", i, idx, ok, body)
				}
			}
		})
	}
}

// TestWebhookNamesIgnoredFields: the plain-JSON webhook accepts fields
// SalesEvent does not have but names them per event, nested ones by path
// (issue 15 item 6); with ?strict=true it refuses the batch, naming the
// first, and stores nothing.
func TestWebhookNamesIgnoredFields(t *testing.T) {
	srv := testserver.Start(t)
	ctx := context.Background()
	acme := testserver.NewCompany(t, srv.App.Org)
	_, key, err := srv.App.APIKeys.Create(ctx, acme.Operator, auth.CreateAPIKeyRequest{Name: "crm"})
	if err != nil {
		t.Fatal(err)
	}
	spend := func(id, extra string) string {
		return `{"source":"crm","external_id":"` + id + `","type":"marketing.spend","occurredAt":"2026-03-03T10:00:00Z","channel":"ads",` + extra + `}`
	}
	batch := `[` +
		spend("ig-0", `"amount":{"minorUnits":100,"currency":"EUR"},"amount_minor":129900,"deal":{"owner":"x"}`) + `,` +
		spend("ig-1", `"amount":{"minorUnits":100,"currency":"EUR","value":1}`) + `,` +
		spend("ig-2", `"amount":{"minor_units":100,"currency":"EUR"},"attributes":{"anything":"goes"}`) + `]`

	t.Run("ErrStrict", func(t *testing.T) {
		status, body := postJSON(t, srv, api.WebhookPath+"?strict=true", key, batch)
		if status != http.StatusBadRequest || !strings.Contains(body, "events[0].amount_minor") {
			t.Fatalf("strict: %d %s", status, body)
		}
	})
	t.Run("OK", func(t *testing.T) {
		status, body := postJSON(t, srv, api.WebhookPath, key, batch)
		if status != http.StatusOK {
			t.Fatalf("status %d: %s", status, body)
		}
		var out struct {
			Accepted int `json:"accepted"`
			Ignored  []struct {
				Index  *int     `json:"index"`
				Fields []string `json:"fields"`
			} `json:"ignored"`
		}
		if err := json.Unmarshal([]byte(body), &out); err != nil {
			t.Fatal(err)
		}
		// Accepted 3: the strict call before stored nothing.
		if out.Accepted != 3 || len(out.Ignored) != 2 {
			t.Fatalf("answer %s", body)
		}
		want := [][]string{{"amount_minor", "deal"}, {"amount.value"}}
		for i, ig := range out.Ignored {
			if ig.Index == nil || *ig.Index != i || strings.Join(ig.Fields, ",") != strings.Join(want[i], ",") {
				t.Fatalf("ignored[%d] = %v %v, want %v (%s)", i, ig.Index, ig.Fields, want[i], body)
			}
		}
	})
	t.Run("StrictWithNothingIgnored", func(t *testing.T) {
		status, body := postJSON(t, srv, api.WebhookPath+"?strict=true", key, spend("ig-3", `"amount":{"minorUnits":1,"currency":"EUR"}`))
		if status != http.StatusOK || strings.Contains(body, "ignored") {
			t.Fatalf("strict, clean: %d %s", status, body)
		}
	})
}
