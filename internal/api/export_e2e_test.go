package api_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	rallyev1 "github.com/rallyehq/rallye/gen/rallye/v1"
	"github.com/rallyehq/rallye/gen/rallye/v1/rallyev1connect"
	"github.com/rallyehq/rallye/internal/analytics"
	"github.com/rallyehq/rallye/internal/org"
	"github.com/rallyehq/rallye/internal/rallye"
	"github.com/rallyehq/rallye/internal/reward"
	"github.com/rallyehq/rallye/internal/testutil/testserver"
)

func exportClient(srv *testserver.Server, p testserver.Protocol, token string) rallyev1connect.ExportServiceClient {
	return rallyev1connect.NewExportServiceClient(p.Client, srv.URL, append(p.Opts, connect.WithInterceptors(streamBearer(token)),
		recordForeign(token))...)
}

// readExport reads a streamed export's bytes.
func readExport[R any, P interface {
	*R
	GetData() []byte
}](stream *connect.ServerStreamForClient[R], err error) ([]byte, error) {
	if err != nil {
		return nil, err
	}
	defer stream.Close()
	var buf bytes.Buffer
	for stream.Receive() {
		buf.Write(P(stream.Msg()).GetData())
	}
	return buf.Bytes(), stream.Err()
}

// parseCSV reads a CSV download (without its BOM) into records by column
// name.
func parseCSV(t *testing.T, body []byte, columns []string) []map[string]string {
	t.Helper()
	recs, err := csv.NewReader(bytes.NewReader(bytes.TrimPrefix(body, []byte("\uFEFF")))).ReadAll()
	if err != nil {
		t.Fatalf("not RFC 4180 CSV: %v\n%s", err, body)
	}
	if len(recs) == 0 || !slices.Equal(recs[0], columns) {
		t.Fatalf("header %v, want %v", recs, columns)
	}
	var out []map[string]string
	for _, r := range recs[1:] {
		m := map[string]string{}
		for i, c := range columns {
			m[c] = r[i]
		}
		out = append(out, m)
	}
	return out
}

// TestExportsEndToEnd: HR downloads participation (CSV with a BOM, names
// with accents, commas and quotes intact, the figures of GetParticipation,
// groups under the minimum size withheld), a rep downloads only their own
// row, the grants come as JSON lines over the RPC, the impact as one row
// per KPI; the credential is checked before any parameter is read, roles
// and teams are enforced, and another company's token finds nothing.
func TestExportsEndToEnd(t *testing.T) {
	srv := testserver.Start(t)
	ctx := context.Background()
	acme := testserver.NewCompany(t, srv.App.Org)
	other := testserver.NewCompany(t, srv.App.Org)
	otherTok := foreign(other.AdminToken)
	_, hrTok := testserver.NewPerson(t, srv.App.Org, acme, []rallye.Role{rallye.RoleHR})
	team, err := srv.App.Org.CreateTeam(ctx, acme.Operator, org.CreateTeamRequest{Name: "Île-de-France, « Nord »"})
	if err != nil {
		t.Fatal(err)
	}
	south, err := srv.App.Org.CreateTeam(ctx, acme.Operator, org.CreateTeamRequest{Name: "Sud"})
	if err != nil {
		t.Fatal(err)
	}
	names := []string{`Zoë "Zozo" Lefèvre, Jr.`, "Hélène Dupré", "François Çelik", "Gaëlle N'Diaye", "Jérôme Œuvray", "=Éric Ménard"}
	var reps []org.User
	for i, name := range names {
		u, err := srv.App.Org.CreateUser(ctx, acme.Operator, org.CreateUserRequest{User: org.UserInput{DisplayName: name,
			Email: fmt.Sprintf("rep%d@acme.test", i), Locale: org.LocaleFR, ExternalID: fmt.Sprintf("crm-exp-%d", i),
			Roles: []rallye.Role{rallye.RoleRep}, TeamIDs: []uuid.UUID{team.ID}}})
		if err != nil {
			t.Fatal(err)
		}
		reps = append(reps, u)
	}
	manager, managerTok := testserver.NewPerson(t, srv.App.Org, acme, []rallye.Role{rallye.RoleManager}, south)
	_ = manager
	repTok := testserver.Token(t, reps[1])

	proto := testserver.Protocols()[0]
	if _, err := srv.App.KPI.InstallModel(ctx, acme.Operator, acme.Admin.ID); err != nil {
		t.Fatal(err)
	}
	created, err := clientsFor(srv, proto, acme.AdminToken).challenges.CreateChallenge(ctx, &rallyev1.CreateChallengeRequest{
		Definition: &rallyev1.ChallengeDefinition{Name: &rallyev1.LocalizedText{Fr: "Appels", En: "Calls"},
			ScoringRules: []*rallyev1.ScoringRule{{EventTypes: []string{"call.logged"}, Points: 10}}},
		TeamIds: []string{team.ID.String()}, EndTime: timestamppb.New(time.Now().Add(time.Hour)), Publish: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	challengeID := created.Challenge.Id
	var events []*rallyev1.SalesEvent
	for i, r := range reps[:4] {
		events = append(events, &rallyev1.SalesEvent{Source: "crm", ExternalId: fmt.Sprintf("exp-call-%d", i),
			Type: "call.logged", OccurredAt: timestamppb.New(time.Now()), RepId: r.ID.String()})
	}
	partReq := &rallyev1.GetParticipationRequest{ChallengeIds: []string{challengeID}, IncludePeople: true}
	var part *rallyev1.GetParticipationResponse
	eventually(t, "the calls count", func() error {
		if _, err := eventClient(srv, proto, acme.AdminToken).IngestEvents(ctx, &rallyev1.IngestEventsRequest{Events: events}); err != nil {
			return err
		}
		part, err = analyticsClient(srv, proto, hrTok).GetParticipation(ctx, partReq)
		if err != nil {
			return err
		}
		if part.Total.Active != 4 {
			return fmt.Errorf("total %v", part.Total)
		}
		return nil
	})

	download := func(path, token string, q url.Values) ([]byte, int, http.Header) {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+path+"?"+q.Encode(), nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return b, res.StatusCode, res.Header
	}
	q := url.Values{"challenge_ids": {challengeID}, "include_people": {"true"}, "bom": {"true"}}

	t.Run("participation as CSV for HR", func(t *testing.T) {
		body, status, h := download("/export/participation.csv", hrTok, q)
		if status != http.StatusOK || h.Get("Content-Type") != "text/csv; charset=utf-8" ||
			!strings.Contains(h.Get("Content-Disposition"), `filename="participation-`) {
			t.Fatalf("%d %v: %s", status, h, body)
		}
		if !bytes.HasPrefix(body, []byte("\uFEFF")) {
			t.Fatal("no BOM though bom=true")
		}
		rows := parseCSV(t, body, analytics.ParticipationColumns)
		byKind := map[string][]map[string]string{}
		for _, r := range rows {
			byKind[r["row_kind"]] = append(byKind[r["row_kind"]], r)
		}
		total := byKind["total"]
		if len(total) != 1 || total[0]["invited"] != fmt.Sprint(part.Total.Invited) || total[0]["active"] != "4" ||
			total[0]["withheld"] != "false" || total[0]["points_median"] != fmt.Sprint(part.Total.Points.GetMedian()) {
			t.Fatalf("total row %v, GetParticipation %v", total, part.Total)
		}
		if tm := byKind["team"]; len(tm) != 1 || tm[0]["team_name"] != "Île-de-France, « Nord »" {
			t.Fatalf("team rows %v", tm)
		}
		// Every person has no hire date: one band of 6, shown (the same
		// rule as GetParticipation).
		for _, b := range byKind["tenure"] {
			shown := !slices.ContainsFunc(part.ByTenure, func(x *rallyev1.TenureParticipation) bool {
				return analytics.BandName(analytics.TenureBand(x.Band)) == b["tenure_band"] && x.Stats.Withheld
			})
			if (b["withheld"] == "false") != shown {
				t.Fatalf("band row %v disagrees with GetParticipation %v", b, part.ByTenure)
			}
		}
		people := byKind["person"]
		if len(people) != len(names) {
			t.Fatalf("%d person rows, want %d", len(people), len(names))
		}
		got := map[string]string{}
		for _, p := range people {
			got[p["user_id"]] = p["display_name"]
		}
		for i, r := range reps {
			want := names[i]
			if strings.HasPrefix(want, "=") {
				want = "'" + want // a formula is defused
			}
			if got[r.ID.String()] != want {
				t.Errorf("name of %s: %q, want %q", r.ID, got[r.ID.String()], want)
			}
		}
	})

	t.Run("participation for a rep is their own row", func(t *testing.T) {
		body, status, _ := download("/export/participation.jsonl", repTok, q)
		if status != http.StatusOK {
			t.Fatalf("%d: %s", status, body)
		}
		lines := strings.Split(strings.TrimSpace(string(body)), "\n")
		var row map[string]any
		if len(lines) != 1 || json.Unmarshal([]byte(lines[0]), &row) != nil {
			t.Fatalf("a rep's download: %s", body)
		}
		if row["row_kind"] != "person" || row["user_id"] != reps[1].ID.String() || row["display_name"] != "Hélène Dupré" || row["points"] != 10.0 {
			t.Fatalf("a rep's row: %v", row)
		}
	})

	t.Run("minimum group size withholds groups in exports", func(t *testing.T) {
		if _, err := analyticsClient(srv, proto, acme.AdminToken).UpdateAnalyticsSettings(ctx, &rallyev1.UpdateAnalyticsSettingsRequest{
			Settings: &rallyev1.AnalyticsSettings{MinGroupSize: 7}}); err != nil {
			t.Fatal(err)
		}
		defer func() {
			_, _ = analyticsClient(srv, proto, acme.AdminToken).UpdateAnalyticsSettings(ctx, &rallyev1.UpdateAnalyticsSettingsRequest{
				Settings: &rallyev1.AnalyticsSettings{MinGroupSize: 5}})
		}()
		body, status, _ := download("/export/participation.csv", hrTok, url.Values{"challenge_ids": {challengeID}})
		if status != http.StatusOK {
			t.Fatalf("%d: %s", status, body)
		}
		for _, r := range parseCSV(t, body, analytics.ParticipationColumns) {
			if r["row_kind"] == "person" {
				t.Fatalf("people without include_people: %v", r)
			}
			if r["withheld"] != "true" || r["invited"] != "" || r["active"] != "" || r["points_median"] != "" {
				t.Fatalf("a group of 6 under a minimum of 7 is shown: %v", r)
			}
		}
	})

	t.Run("grants as JSON lines over the RPC", func(t *testing.T) {
		req := &rallyev1.ExportGrantsRequest{Options: &rallyev1.ExportOptions{Format: rallyev1.ExportFormat_EXPORT_FORMAT_JSONL},
			StartTime: timestamppb.New(time.Now().Add(-time.Hour)), EndTime: timestamppb.New(time.Now().Add(time.Hour))}
		body, err := readExport(exportClient(srv, proto, hrTok).ExportGrants(ctx, req))
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(string(body)), "\n")
		var sum float64
		for _, l := range lines {
			var row map[string]any
			if err := json.Unmarshal([]byte(l), &row); err != nil {
				t.Fatalf("%v: %s", err, l)
			}
			if len(row) != len(reward.GrantColumns) {
				t.Fatalf("row %v has not the %d columns", row, len(reward.GrantColumns))
			}
			sum += row["points"].(float64)
		}
		if len(lines) != 4 || sum != 40 {
			t.Fatalf("%d grants summing to %v, want 4 summing to 40: %s", len(lines), sum, body)
		}
		// The manager of the south team sees none of the north's points.
		body, err = readExport(exportClient(srv, proto, managerTok).ExportGrants(ctx, req))
		if err != nil || len(bytes.TrimSpace(body)) != 0 {
			t.Fatalf("a manager of another team: %s, %v", body, err)
		}
		_, err = readExport(exportClient(srv, proto, managerTok).ExportGrants(ctx, &rallyev1.ExportGrantsRequest{
			StartTime: req.StartTime, EndTime: req.EndTime, TeamId: team.ID.String()}))
		wantCode(t, err, connect.CodePermissionDenied)
	})

	t.Run("impact as CSV", func(t *testing.T) {
		body, status, _ := download("/export/impact.csv", hrTok, url.Values{"challenge_id": {challengeID}, "method": {"normal"}})
		if status != http.StatusOK {
			t.Fatalf("%d: %s", status, body)
		}
		rows := parseCSV(t, body, analytics.ImpactColumns)
		if len(rows) != len(analytics.DefaultImpactKPIs) {
			t.Fatalf("%d rows, want one per default KPI: %v", len(rows), rows)
		}
		for i, r := range rows {
			// Six participants: below the minimum sample, no figure.
			if r["kpi_key"] != analytics.DefaultImpactKPIs[i] || r["enough_data"] != "false" || r["estimate"] != "" || r["challenge_id"] != challengeID {
				t.Fatalf("row %v", r)
			}
		}
	})

	t.Run("refusals", func(t *testing.T) {
		cases := []struct {
			name, path, token string
			q                 url.Values
			status            int
			code              string
		}{
			// The credential is checked first: a bad parameter without one
			// is still unauthenticated.
			{"no credential", "/export/grants.csv", "", url.Values{"start_time": {"yesterday"}}, http.StatusUnauthorized, "unauthenticated"},
			{"bad credential", "/export/participation.csv", "nope", url.Values{"team_id": {"x"}}, http.StatusUnauthorized, "unauthenticated"},
			{"rep on impact", "/export/impact.csv", repTok, url.Values{"challenge_id": {challengeID}}, http.StatusForbidden, "permission_denied"},
			{"bad time", "/export/grants.csv", hrTok, url.Values{"start_time": {"yesterday"}}, http.StatusBadRequest, "start_time"},
			{"missing window", "/export/grants.jsonl", hrTok, url.Values{}, http.StatusBadRequest, "start_time"},
			{"unknown parameter", "/export/grants.csv", hrTok, url.Values{"password": {"x"}}, http.StatusBadRequest, "password"},
			{"bad uuid", "/export/participation.csv", hrTok, url.Values{"team_id": {"x"}}, http.StatusBadRequest, "team_id"},
			{"manager on another team", "/export/participation.csv", managerTok, url.Values{"team_id": {team.ID.String()}}, http.StatusForbidden, "team_id"},
			{"other company's challenge", "/export/participation.csv", otherTok, url.Values{"challenge_ids": {challengeID}}, http.StatusNotFound, "not_found"},
			{"other company's team", "/export/grants.csv", otherTok, url.Values{"team_id": {team.ID.String()},
				"start_time": {"2026-01-01T00:00:00Z"}, "end_time": {"2026-02-01T00:00:00Z"}}, http.StatusNotFound, "not_found"},
			{"other company's impact", "/export/impact.csv", otherTok, url.Values{"challenge_id": {challengeID}}, http.StatusNotFound, "not_found"},
			{"unknown file", "/export/secrets.csv", hrTok, nil, http.StatusNotFound, ""},
			{"unknown format", "/export/grants.xlsx", hrTok, nil, http.StatusNotFound, ""},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				body, status, _ := download(tc.path, tc.token, tc.q)
				if status != tc.status || !strings.Contains(string(body), tc.code) {
					t.Fatalf("%d %s, want %d mentioning %q", status, body, tc.status, tc.code)
				}
			})
		}
	})

	t.Run("other company over the RPCs", func(t *testing.T) {
		c := exportClient(srv, proto, otherTok)
		_, err := readExport(c.ExportParticipation(ctx, &rallyev1.ExportParticipationRequest{ChallengeIds: []string{challengeID}}))
		wantCode(t, err, connect.CodeNotFound)
		_, err = readExport(c.ExportImpact(ctx, &rallyev1.ExportImpactRequest{ChallengeId: challengeID}))
		wantCode(t, err, connect.CodeNotFound)
		body, err := readExport(c.ExportGrants(ctx, &rallyev1.ExportGrantsRequest{
			StartTime: timestamppb.New(time.Now().Add(-time.Hour)), EndTime: timestamppb.New(time.Now().Add(time.Hour))}))
		var ce *connect.Error
		if errors.As(err, &ce) || strings.Count(string(body), "\n") != 1 {
			t.Fatalf("another company's grants: %q, %v (want the header alone)", body, err)
		}
	})
}
