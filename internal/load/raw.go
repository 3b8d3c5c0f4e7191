package load

import (
	"github.com/google/uuid"

	"github.com/rallyehq/rallye/internal/event/eventgen"
)

// rawColumns are event_versions' columns, written by the raw ceiling.
var rawColumns = []string{"tenant_id", "id", "source", "external_id", "revision", "type", "occurred_at", "retracted",
	"rep_external_id", "account_id", "opportunity_id", "lead_id", "amount", "gross_margin", "segment", "product",
	"deal_kind", "opportunity_created_at", "stage", "from_stage", "stage_entered_at", "lead_created_at",
	"ticket_opened_at", "score", "discovery_completed", "content_id", "channel"}

const rawInsertSQL = `INSERT INTO load_raw_insert (tenant_id, id, source, external_id, revision, type, occurred_at, retracted,
		rep_external_id, account_id, opportunity_id, lead_id, amount, gross_margin, segment, product, deal_kind,
		opportunity_created_at, stage, from_stage, stage_entered_at, lead_created_at, ticket_opened_at, score,
		discovery_completed, content_id, channel)
	SELECT $1, * FROM unnest($2::uuid[], $3::text[], $4::text[], $5::bigint[], $6::text[], $7::timestamptz[], $8::boolean[],
		$9::text[], $10::text[], $11::text[], $12::text[], $13::bigint[], $14::bigint[], $15::text[], $16::text[], $17::text[],
		$18::timestamptz[], $19::text[], $20::text[], $21::timestamptz[], $22::timestamptz[], $23::timestamptz[],
		$24::integer[], $25::boolean[], $26::text[], $27::text[])`

func orNil[T comparable](v T) *T {
	var zero T
	if v == zero {
		return nil
	}
	return &v
}

// rowOf is one delivery as a row of rawColumns.
func rowOf(tenant uuid.UUID, d eventgen.Delivery) []any {
	e := d.Event
	return []any{tenant, uuid.Must(uuid.NewV7()), e.Source, e.ExternalID, e.Revision, string(e.Type), e.OccurredAt, e.Retracted,
		orNil(e.RepExternalID), orNil(e.AccountID), orNil(e.OpportunityID), orNil(e.LeadID), e.Amount, e.GrossMargin,
		orNil(e.Segment), orNil(e.Product), orNil(e.DealKind), orNil(e.OpportunityCreatedAt), orNil(e.Stage), orNil(e.FromStage),
		orNil(e.StageEnteredAt), orNil(e.LeadCreatedAt), orNil(e.TicketOpenedAt), e.Score, e.DiscoveryCompleted,
		orNil(e.ContentID), orNil(e.Channel)}
}

// columnsOf is rows as the arguments of rawInsertSQL: one array per column.
func columnsOf(tenant uuid.UUID, rows []eventgen.Delivery) []any {
	cols := make([][]any, len(rawColumns)-1)
	for _, d := range rows {
		for i, v := range rowOf(tenant, d)[1:] {
			cols[i] = append(cols[i], v)
		}
	}
	args := []any{tenant}
	for _, c := range cols {
		args = append(args, c)
	}
	return args
}
