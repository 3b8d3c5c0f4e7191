package console_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/rallyehq/rallye/internal/console"
)

func TestConsoleServesItsPage(t *testing.T) {
	type want struct {
		status      int
		contains    string
		contentType string
	}
	production := console.New(console.Config{OIDCIssuer: "https://id.example.com/realms/acme", OIDCClientID: "rallye-console"})
	demo := console.New(console.Config{})
	demo.EnableDemo([]console.DemoPerson{{Name: "Camille Dubois", Email: "camille@demo.test", Roles: []string{"rep"}, Token: "tok"}})
	for _, tc := range []struct {
		name    string
		console *console.Console
		method  string
		path    string
		want    want
	}{
		{"the page", production, http.MethodGet, "/console/", want{200, `<script type="module" src="/console/app.js">`, "text/html"}},
		{"the script", production, http.MethodGet, "/console/app.js", want{200, "", "text/javascript"}},
		{"the styles", production, http.MethodGet, "/console/app.css", want{200, "", "text/css"}},
		{"production config names the identity provider", production, http.MethodGet, "/console/config.json", want{200, `"oidc":{"issuer":"https://id.example.com/realms/acme","clientId":"rallye-console"}`, "application/json"}},
		{"production config has no demo", production, http.MethodGet, "/console/config.json", want{200, `"demo":false`, "application/json"}},
		{"no demo people outside demo mode", production, http.MethodGet, "/console/demo/people", want{404, "", ""}},
		{"demo config", demo, http.MethodGet, "/console/config.json", want{200, `{"demo":true}`, "application/json"}},
		{"demo people in demo mode", demo, http.MethodGet, "/console/demo/people", want{200, `"email":"camille@demo.test"`, "application/json"}},
		{"an unknown file", production, http.MethodGet, "/console/nope.js", want{404, "", ""}},
		{"no writes", demo, http.MethodPost, "/console/demo/people", want{405, "", ""}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			tc.console.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, nil))
			res := rec.Result()
			body, _ := io.ReadAll(res.Body)
			if res.StatusCode != tc.want.status {
				t.Fatalf("status %d, want %d: %s", res.StatusCode, tc.want.status, body)
			}
			if !strings.Contains(string(body), tc.want.contains) {
				t.Fatalf("body %.200s does not contain %q", body, tc.want.contains)
			}
			if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, tc.want.contentType) {
				t.Fatalf("content type %q, want %q", ct, tc.want.contentType)
			}
			if csp := res.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") {
				t.Fatalf("content security policy %q", csp)
			}
		})
	}

	// The page may reach the identity provider to sign in, and nothing else.
	rec := httptest.NewRecorder()
	production.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/console/", nil))
	if csp := rec.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "connect-src 'self' https://id.example.com;") {
		t.Fatalf("content security policy %q", csp)
	}
	var people []console.DemoPerson
	rec = httptest.NewRecorder()
	demo.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/console/demo/people", nil))
	if err := json.NewDecoder(rec.Body).Decode(&people); err != nil || len(people) != 1 || people[0].Token != "tok" {
		t.Fatalf("demo people %v %v", people, err)
	}
}
