package api

import (
	"encoding/csv"
	"fmt"
	"net/http"
	"strings"
	"time"

	"connectrpc.com/connect"

	"github.com/rallyehq/rallye/gen/rallye/v1/rallyev1connect"
	"github.com/rallyehq/rallye/internal/rallye"
	"github.com/rallyehq/rallye/internal/reward"
)

// ExportPath serves the fulfilled redemptions as CSV for payroll and
// gift-card vendors: GET /export/redemptions.csv?from=...&to=... (RFC 3339;
// by default the last 31 days), with the credential and the rule of
// RewardService.ExportRedemptions (admins).
const ExportPath = "/export/redemptions.csv"

// exportColumns is the CSV header.
var exportColumns = []string{"redemption_id", "fulfilled_at", "crm_id", "name", "email", "item_fr", "item_en",
	"cost_points", "money_value", "currency", "approved_by"}

// redemptionsCSV streams RFC 4180 CSV (UTF-8, CRLF line ends, a header
// row) as rows are read; an error before the first row is a Connect error
// in JSON, one after it ends the body early (and is logged).
type redemptionsCSV struct {
	guard    *guard
	observer *observer
	svc      *reward.Service
	errors   *connect.ErrorWriter
}

func (h *redemptionsCSV) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	ctx := h.observer.begin(r.Context(), ExportPath)
	fail := func(err error) {
		err = h.observer.end(ctx, ExportPath, start, err)
		_ = h.errors.Write(w, r, err)
	}
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		http.Error(w, "GET the CSV", http.StatusMethodNotAllowed)
		return
	}
	ctx, err := h.guard.admit(ctx, rallyev1connect.RewardServiceExportRedemptionsProcedure, r.Header.Get("Authorization"))
	if err != nil {
		fail(err)
		return
	}
	p, _ := rallye.PrincipalFrom(ctx)
	to, err := queryTime(r, "to", time.Now())
	if err != nil {
		fail(err)
		return
	}
	from, err := queryTime(r, "from", to.Add(-31*24*time.Hour))
	if err != nil {
		fail(err)
		return
	}
	cw := csv.NewWriter(w)
	cw.UseCRLF = true
	started := false
	begin := func() error {
		started = true
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="redemptions-%s-%s.csv"`,
			from.UTC().Format("20060102"), to.UTC().Format("20060102")))
		return cw.Write(exportColumns)
	}
	n := 0
	err = h.svc.ExportFulfilled(ctx, p, from, to, func(e reward.ExportRow) error {
		if !started {
			if err := begin(); err != nil {
				return err
			}
		}
		if err := cw.Write([]string{e.RedemptionID.String(), e.FulfilledAt.UTC().Format(time.RFC3339), cell(e.PersonCRMID),
			cell(e.Person), cell(e.Email), cell(e.Item.FR), cell(e.Item.EN), fmt.Sprint(e.Cost), majorUnits(e.MoneyValue),
			e.Currency, cell(e.ApprovedBy)}); err != nil {
			return err
		}
		if n++; n%500 == 0 {
			cw.Flush()
			if f, ok := w.(http.Flusher); ok {
				f.Flush()
			}
		}
		return cw.Error()
	})
	if err == nil && !started {
		err = begin()
	}
	if err != nil && !started {
		fail(err)
		return
	}
	cw.Flush()
	if err == nil {
		err = cw.Error()
	}
	h.observer.end(ctx, ExportPath, start, err)
}

func queryTime(r *http.Request, name string, def time.Time) (time.Time, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return time.Time{}, rallye.Invalid(name, "must be an RFC 3339 time such as 2026-03-01T00:00:00Z")
	}
	return t, nil
}

// majorUnits writes minor units as a decimal with two places: 2500 ->
// "25.00", the form spreadsheets and payroll tools read in every locale.
func majorUnits(minor int64) string {
	return fmt.Sprintf("%d.%02d", minor/100, minor%100)
}

// cell defuses a text that a spreadsheet would run as a formula (a name
// starting with "=", "+", "-" or "@").
func cell(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}
