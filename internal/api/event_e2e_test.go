package api_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	rallyev1 "github.com/rallyehq/rallye/gen/rallye/v1"
	"github.com/rallyehq/rallye/gen/rallye/v1/rallyev1connect"
	"github.com/rallyehq/rallye/internal/api"
	"github.com/rallyehq/rallye/internal/auth"
	"github.com/rallyehq/rallye/internal/rallye"
	"github.com/rallyehq/rallye/internal/testutil/testserver"
)

func eventClient(srv *testserver.Server, p testserver.Protocol, token string) rallyev1connect.EventServiceClient {
	return rallyev1connect.NewEventServiceClient(p.Client, srv.URL, append(p.Opts, testserver.Bearer(token), recordForeign(token))...)
}

func TestEventsEndToEnd(t *testing.T) {
	srv := testserver.Start(t)
	ctx := context.Background()
	acme := testserver.NewCompany(t, srv.App.Org)
	globex := testserver.NewCompany(t, srv.App.Org)
	rep, repToken := testserver.NewPerson(t, srv.App.Org, acme, []rallye.Role{rallye.RoleRep})
	other, _ := testserver.NewPerson(t, srv.App.Org, acme, []rallye.Role{rallye.RoleRep})
	_, key, err := srv.App.APIKeys.Create(ctx, acme.Operator, auth.CreateAPIKeyRequest{Name: "crm"})
	if err != nil {
		t.Fatal(err)
	}
	at := timestamppb.New(time.Date(2026, 3, 3, 10, 0, 0, 0, time.UTC))
	call := func(id, repExt string) *rallyev1.SalesEvent {
		return &rallyev1.SalesEvent{Source: "crm", ExternalId: id, Type: "call.logged", OccurredAt: at, RepExternalId: repExt}
	}

	for _, proto := range testserver.Protocols() {
		t.Run(proto.Name, func(t *testing.T) {
			crm := eventClient(srv, proto, key)
			batch := &rallyev1.IngestEventsRequest{Events: []*rallyev1.SalesEvent{
				call(proto.Name+"-1", rep.ExternalID),
				call(proto.Name+"-2", "crm-ghost"),
				{Source: "crm", ExternalId: proto.Name + "-3", Type: "deal.won", OccurredAt: at, RepExternalId: rep.ExternalID},
				call(proto.Name+"-4", other.ExternalID),
			}}
			res, err := crm.IngestEvents(ctx, batch)
			if err != nil {
				t.Fatal(err)
			}
			if res.Accepted != 2 || len(res.Rejected) != 1 || len(res.Parked) != 1 || res.Parked[0].GetIndex() != 1 ||
				res.Parked[0].RepExternalId != "crm-ghost" || res.Rejected[0].GetIndex() != 2 ||
				res.Rejected[0].Field != "opportunity_id" || len(res.UnknownRepExternalIds) != 1 {
				t.Fatalf("response = %v", res)
			}
			replay, err := crm.IngestEvents(ctx, batch)
			if err != nil || replay.Accepted != 0 || replay.Duplicates != 2 {
				t.Fatalf("replay = %v, %v", replay, err)
			}

			t.Run("ErrPermissionDenied", func(t *testing.T) {
				_, err := eventClient(srv, proto, repToken).IngestEvents(ctx, batch)
				wantCode(t, err, connect.CodePermissionDenied)
			})
			t.Run("ErrInvalidBatch", func(t *testing.T) {
				_, err := crm.IngestEvents(ctx, &rallyev1.IngestEventsRequest{})
				wantCode(t, err, connect.CodeInvalidArgument)
			})
			t.Run("RepSeesOwnEvents", func(t *testing.T) {
				list, err := eventClient(srv, proto, repToken).ListEvents(ctx, &rallyev1.ListEventsRequest{})
				if err != nil {
					t.Fatal(err)
				}
				for _, e := range list.Events {
					if e.RepId != rep.ID.String() {
						t.Fatalf("a rep sees another rep's event %v", e)
					}
				}
				if len(list.Events) == 0 {
					t.Fatal("the rep sees none of their events")
				}
			})
			t.Run("ErrOtherTenant", func(t *testing.T) {
				list, err := eventClient(srv, proto, foreign(globex.AdminToken)).ListEvents(ctx, &rallyev1.ListEventsRequest{})
				if err != nil {
					t.Fatal(err)
				}
				if len(list.Events) != 0 {
					t.Fatalf("another company sees %d events", len(list.Events))
				}
				_, err = eventClient(srv, proto, foreign(globex.AdminToken)).IngestEvents(ctx, &rallyev1.IngestEventsRequest{
					Events: []*rallyev1.SalesEvent{{Source: "crm", ExternalId: "x", Type: "call.logged", OccurredAt: at, RepId: rep.ID.String()}}})
				if err != nil {
					t.Fatal(err)
				}
			})
		})
	}

	t.Run("Webhook", func(t *testing.T) {
		post := func(body string, headers map[string]string) (int, map[string]any) {
			req, _ := http.NewRequest(http.MethodPost, srv.URL+api.WebhookPath, strings.NewReader(body))
			for k, v := range headers {
				req.Header.Set(k, v)
			}
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			b, _ := io.ReadAll(res.Body)
			var out map[string]any
			_ = json.Unmarshal(b, &out)
			return res.StatusCode, out
		}
		one := `{"source":"crm","externalId":"wh-1","type":"call.logged","occurredAt":"2026-03-03T10:00:00Z","repExternalId":"` + rep.ExternalID + `","crmOnlyField":1}`
		status, out := post(one, map[string]string{"X-Rallye-Api-Key": key})
		if status != 200 || out["accepted"] != float64(1) {
			t.Fatalf("single event: %d %v", status, out)
		}
		status, out = post("["+one+"]", map[string]string{"Authorization": "Bearer " + key})
		if status != 200 || out["duplicates"] != float64(1) {
			t.Fatalf("array replay: %d %v", status, out)
		}
		status, out = post(`{"events":[`+one+`]}`, nil)
		if status != 401 || out["code"] != "unauthenticated" {
			t.Fatalf("without a key: %d %v", status, out)
		}
		status, out = post(`{"events":[`+one+`]}`, map[string]string{"Authorization": "Bearer " + repToken})
		if status != 403 {
			t.Fatalf("with a rep token: %d %v", status, out)
		}
		status, out = post(`not json`, map[string]string{"X-Rallye-Api-Key": key})
		if status != 400 || out["code"] != "invalid_argument" {
			t.Fatalf("bad json: %d %v", status, out)
		}
	})
}
