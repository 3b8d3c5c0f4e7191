package api_test

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"

	rallyev1 "github.com/rallyehq/rallye/gen/rallye/v1"
	"github.com/rallyehq/rallye/internal/api"
	"github.com/rallyehq/rallye/internal/auth"
	"github.com/rallyehq/rallye/internal/event"
	"github.com/rallyehq/rallye/internal/rallye"
	"github.com/rallyehq/rallye/internal/testutil/testserver"
)

// TestEventBoundsEndToEnd sends, through IngestEvents on every protocol and
// through the webhook, events dated 9999-12-31, 2099-12-31, two days ahead
// and 0001-01-01, without a date, and worth int64-max minor units: each is
// rejected with its index, field and a message saying what is wrong (never
// "required" for a date that was sent), the valid rest is stored, and the
// source's watermark stays within the server's clock plus the skew.
func TestEventBoundsEndToEnd(t *testing.T) {
	srv := testserver.Start(t)
	ctx := context.Background()
	acme := testserver.NewCompany(t, srv.App.Org)
	rep, _ := testserver.NewPerson(t, srv.App.Org, acme, []rallye.Role{rallye.RoleRep})
	_, key, err := srv.App.APIKeys.Create(ctx, acme.Operator, auth.CreateAPIKeyRequest{Name: "crm"})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Second)
	ts := func(s string) *timestamppb.Timestamp {
		at, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return timestamppb.New(at)
	}
	type want struct {
		field, contains, absent string // absent: must not appear in the message
	}
	// batch returns the events of source src and, per index, the rejection
	// expected (nil: accepted).
	batch := func(src string) ([]*rallyev1.SalesEvent, []*want) {
		call := func(id string, at *timestamppb.Timestamp) *rallyev1.SalesEvent {
			return &rallyev1.SalesEvent{Source: src, ExternalId: id, Type: "call.logged", OccurredAt: at, RepExternalId: rep.ExternalID}
		}
		won := func(id string, minor int64, created *timestamppb.Timestamp) *rallyev1.SalesEvent {
			return &rallyev1.SalesEvent{Source: src, ExternalId: id, Type: "deal.won", OccurredAt: timestamppb.New(now.Add(-time.Hour)),
				RepExternalId: rep.ExternalID, OpportunityId: "opp-" + id, DealKind: "new", OpportunityCreatedAt: created,
				Amount: &rallyev1.Money{MinorUnits: minor, Currency: "EUR"}}
		}
		lastWeek := timestamppb.New(now.Add(-7 * 24 * time.Hour))
		evs := []*rallyev1.SalesEvent{
			call("ok", timestamppb.New(now.Add(-time.Hour))),
			call("year-9999", ts("9999-12-31T23:59:59Z")),
			call("year-0001", ts("0001-01-01T00:00:00Z")),
			call("no-date", nil),
			won("int64-max", math.MaxInt64, lastWeek),
			call("in-an-hour", timestamppb.New(now.Add(time.Hour))),
			call("last-century", ts("1999-12-31T23:59:59Z")),
			won("created-0001", 1000, ts("0001-01-01T00:00:00Z")),
			won("at-the-bound", event.MaxMinorUnits, lastWeek),
			won("above-the-bound", event.MaxMinorUnits+1, lastWeek),
			call("in-two-days", timestamppb.New(now.Add(48*time.Hour))),
			call("year-2099", ts("2099-12-31T23:59:59Z")),
		}
		// Out of the years Rallye serves: the proto's rule says so (not
		// "required"); within them but ahead of the clock: the server's.
		window := "must be from 2000-01-01T00:00:00Z to before 2100-01-01T00:00:00Z"
		wants := []*want{
			nil,
			{"occurred_at", window, "required"},
			{"occurred_at", window, "required"},
			{"occurred_at", "required", ""},
			{"amount.minor_units", "must be at most 100000000000000", ""},
			nil,
			{"occurred_at", window, ""},
			{"opportunity_created_at", window, "required"},
			nil,
			{"amount.minor_units", "must be at most", ""},
			{"occurred_at", "is more than 24h ahead of the server's clock", ""},
			{"occurred_at", "2099-12-31T23:59:59Z is more than 24h ahead of the server's clock", ""},
		}
		return evs, wants
	}
	check := func(t *testing.T, rejected []*rallyev1.RowError, accepted int32, wants []*want) {
		t.Helper()
		byIndex := map[int32]*rallyev1.RowError{}
		for _, r := range rejected {
			byIndex[r.GetIndex()] = r
		}
		var wantAccepted int32
		for i, w := range wants {
			r := byIndex[int32(i)]
			switch {
			case w == nil && r != nil:
				t.Errorf("event %d rejected: %v", i, r)
			case w == nil:
				wantAccepted++
			case r == nil:
				t.Errorf("event %d accepted, want a rejection on %s", i, w.field)
			case r.Field != w.field || !strings.Contains(r.Message, w.contains) || (w.absent != "" && strings.Contains(r.Message, w.absent)):
				t.Errorf("event %d: rejected on %s with %q, want %s with %q", i, r.Field, r.Message, w.field, w.contains)
			}
		}
		if accepted != wantAccepted || len(rejected) != len(wants)-int(wantAccepted) {
			t.Errorf("accepted %d, rejected %d; want %d and %d", accepted, len(rejected), wantAccepted, len(wants)-int(wantAccepted))
		}
	}
	checkWatermark := func(t *testing.T, src string) {
		t.Helper()
		marks, err := srv.App.Events.Watermarks(ctx, acme.Tenant.ID)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range marks {
			if m.Source != src {
				continue
			}
			// The newest accepted event is the one an hour ahead.
			if !m.NewestEvent.Equal(now.Add(time.Hour)) {
				t.Errorf("watermark of %s = %s, want %s", src, m.NewestEvent, now.Add(time.Hour))
			}
			return
		}
		t.Errorf("no watermark for %s", src)
	}

	for _, proto := range testserver.Protocols() {
		t.Run(proto.Name, func(t *testing.T) {
			src := "crm-" + proto.Name
			evs, wants := batch(src)
			res, err := eventClient(srv, proto, key).IngestEvents(ctx, &rallyev1.IngestEventsRequest{Events: evs})
			if err != nil {
				t.Fatal(err)
			}
			check(t, res.Rejected, res.Accepted, wants)
			checkWatermark(t, src)
		})
	}

	t.Run("Webhook", func(t *testing.T) {
		evs, wants := batch("crm-webhook")
		parts := make([]string, len(evs))
		for i, e := range evs {
			b, err := protojson.Marshal(e)
			if err != nil {
				t.Fatal(err)
			}
			parts[i] = string(b)
		}
		body := fmt.Sprintf(`{"events":[%s]}`, strings.Join(parts, ","))
		if !strings.Contains(body, `"0001-01-01T00:00:00Z"`) || !strings.Contains(body, `"9999-12-31T23:59:59Z"`) {
			t.Fatalf("the body does not carry the dates under test: %s", body)
		}
		req, _ := http.NewRequest(http.MethodPost, srv.URL+api.WebhookPath, strings.NewReader(body))
		req.Header.Set("X-Rallye-Api-Key", key)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("webhook: %d %s", resp.StatusCode, raw)
		}
		var out rallyev1.IngestEventsResponse
		if err := protojson.Unmarshal(raw, &out); err != nil {
			t.Fatal(err)
		}
		check(t, out.Rejected, out.Accepted, wants)
		checkWatermark(t, "crm-webhook")
	})
}
