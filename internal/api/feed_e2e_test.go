package api_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/types/known/timestamppb"

	rallyev1 "github.com/rallyehq/rallye/gen/rallye/v1"
	"github.com/rallyehq/rallye/gen/rallye/v1/rallyev1connect"
	"github.com/rallyehq/rallye/internal/auth"
	"github.com/rallyehq/rallye/internal/rallye"
	"github.com/rallyehq/rallye/internal/testutil/testserver"
)

func feedClient(srv *testserver.Server, p testserver.Protocol, token string) rallyev1connect.FeedServiceClient {
	return rallyev1connect.NewFeedServiceClient(p.Client, srv.URL, append(p.Opts, testserver.Bearer(token), recordForeign(token))...)
}

// TestFeedDeadLettersEndToEnd lists a company's dead letters: its admin
// sees them with their event, another company's admin sees none, other
// roles are refused, and bad filters name their field.
func TestFeedDeadLettersEndToEnd(t *testing.T) {
	srv := testserver.Start(t)
	ctx := context.Background()
	acme := testserver.NewCompany(t, srv.App.Org)
	globex := testserver.NewCompany(t, srv.App.Org)
	rep, repToken := testserver.NewPerson(t, srv.App.Org, acme, []rallye.Role{rallye.RoleRep})
	_, key, err := srv.App.APIKeys.Create(ctx, acme.Operator, auth.CreateAPIKeyRequest{Name: "crm"})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
	crm := eventClient(srv, testserver.Protocols()[0], key)
	if _, err := crm.IngestEvents(ctx, &rallyev1.IngestEventsRequest{Events: []*rallyev1.SalesEvent{
		{Source: "crm", ExternalId: "call-1", Type: "call.logged", OccurredAt: timestamppb.New(at), RepExternalId: rep.ExternalID},
		{Source: "crm", ExternalId: "call-2", Type: "call.logged", OccurredAt: timestamppb.New(at), RepExternalId: rep.ExternalID},
	}}); err != nil {
		t.Fatal(err)
	}
	// Two letters as the feed writes them: one that failed, one resolved.
	// (How they come to be is internal/event's test.)
	var dead, retried uuid.UUID
	err = srv.App.DB.InTenant(ctx, acme.Tenant.ID, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT c.seq, c.version_id FROM event_changes c ORDER BY c.seq`)
		if err != nil {
			return err
		}
		type change struct {
			seq     int64
			version uuid.UUID
		}
		changes, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (change, error) {
			var c change
			return c, r.Scan(&c.seq, &c.version)
		})
		if err != nil {
			return err
		}
		if len(changes) != 2 {
			return fmt.Errorf("%d changes, want 2", len(changes))
		}
		dead, retried = uuid.Must(uuid.NewV7()), uuid.Must(uuid.NewV7())
		for i, id := range []uuid.UUID{dead, retried} {
			state, resolved := "dead", (*time.Time)(nil)
			if id == retried {
				now := time.Now()
				state, resolved = "retried", &now
			}
			if _, err := tx.Exec(ctx, `INSERT INTO feed_dead_letters (tenant_id, id, consumer, seq, version_id, sign, state,
					attempts, error, first_failed_at, dead_at, resolved_at)
				VALUES ($1, $2, 'kpi-rollups', $3, $4, 1, $5, 8, 'secret internal detail', now(), now(), $6)`,
				acme.Tenant.ID, id, changes[i].seq, changes[i].version, state, resolved); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	for _, proto := range testserver.Protocols() {
		t.Run(proto.Name, func(t *testing.T) {
			admin := feedClient(srv, proto, acme.AdminToken)
			t.Run("OK", func(t *testing.T) {
				res, err := admin.ListDeadLetters(ctx, &rallyev1.ListDeadLettersRequest{})
				if err != nil {
					t.Fatal(err)
				}
				if len(res.DeadLetters) != 1 {
					t.Fatalf("open letters %v", res.DeadLetters)
				}
				d := res.DeadLetters[0]
				if d.Id != dead.String() || d.State != rallyev1.DeadLetterState_DEAD_LETTER_STATE_DEAD || d.Consumer != "kpi-rollups" ||
					d.Attempts != 8 || d.Sign != 1 || d.Event.GetExternalId() != "call-1" || d.DeadTime == nil {
					t.Fatalf("letter %v", d)
				}
				if d.Reason == "" || d.Reason == "secret internal detail" {
					t.Fatalf("reason %q: the consumer's error stays in the logs", d.Reason)
				}
				all, err := admin.ListDeadLetters(ctx, &rallyev1.ListDeadLettersRequest{IncludeResolved: true, PageSize: 1})
				if err != nil || len(all.DeadLetters) != 1 || all.DeadLetters[0].Id != retried.String() || all.NextPageToken == "" {
					t.Fatalf("first page of all letters: %v, %v", all, err)
				}
				next, err := admin.ListDeadLetters(ctx, &rallyev1.ListDeadLettersRequest{IncludeResolved: true, PageSize: 1, PageToken: all.NextPageToken})
				if err != nil || len(next.DeadLetters) != 1 || next.DeadLetters[0].Id != dead.String() {
					t.Fatalf("second page: %v, %v", next, err)
				}
				other, err := admin.ListDeadLetters(ctx, &rallyev1.ListDeadLettersRequest{Consumer: "challenge-progress", IncludeResolved: true})
				if err != nil || len(other.DeadLetters) != 0 {
					t.Fatalf("another consumer's letters: %v, %v", other, err)
				}
			})
			t.Run("ErrOtherTenant", func(t *testing.T) {
				res, err := feedClient(srv, proto, foreign(globex.AdminToken)).ListDeadLetters(ctx,
					&rallyev1.ListDeadLettersRequest{IncludeResolved: true})
				if err != nil {
					t.Fatal(err)
				}
				if len(res.DeadLetters) != 0 {
					t.Fatalf("another company sees %d dead letters", len(res.DeadLetters))
				}
			})
			t.Run("ErrPermissionDenied", func(t *testing.T) {
				_, err := feedClient(srv, proto, repToken).ListDeadLetters(ctx, &rallyev1.ListDeadLettersRequest{})
				wantCode(t, err, connect.CodePermissionDenied)
				_, err = feedClient(srv, proto, key).ListDeadLetters(ctx, &rallyev1.ListDeadLettersRequest{})
				wantCode(t, err, connect.CodePermissionDenied)
			})
			t.Run("ErrInvalid", func(t *testing.T) {
				_, err := admin.ListDeadLetters(ctx, &rallyev1.ListDeadLettersRequest{Consumer: "KPI rollups"})
				wantField(t, err, "consumer")
				_, err = admin.ListDeadLetters(ctx, &rallyev1.ListDeadLettersRequest{PageToken: "not-a-token"})
				wantField(t, err, "page_token")
				_, err = admin.ListDeadLetters(ctx, &rallyev1.ListDeadLettersRequest{PageSize: 501})
				wantField(t, err, "page_size")
			})
		})
	}
}
