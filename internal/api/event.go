package api

import (
	"context"
	"time"

	"buf.build/go/protovalidate"
	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	rallyev1 "github.com/rallyehq/rallye/gen/rallye/v1"
	"github.com/rallyehq/rallye/internal/event"
	"github.com/rallyehq/rallye/internal/page"
	"github.com/rallyehq/rallye/internal/rallye"
)

// eventHandler serves rallyev1connect.EventServiceHandler.
type eventHandler struct {
	store     *event.Store
	validator protovalidate.Validator
}

func (h *eventHandler) IngestEvents(ctx context.Context, req *rallyev1.IngestEventsRequest) (*rallyev1.IngestEventsResponse, error) {
	p, _ := rallye.PrincipalFrom(ctx)
	rows := make([]event.Row, len(req.GetEvents()))
	for i, in := range req.GetEvents() {
		err := checkPart(h.validator, in, "", nil)
		if err == nil {
			rows[i], err = eventFromProto(in)
		}
		if e, ok := rallye.AsError(err); ok {
			rows[i].Invalid = &event.RowError{Index: i, Field: e.Field, Message: e.Message}
		} else if err != nil {
			return nil, err
		}
	}
	res, err := h.store.Ingest(ctx, p, rows)
	if err != nil {
		return nil, err
	}
	out := &rallyev1.IngestEventsResponse{
		Accepted: int32(res.Accepted), Corrected: int32(res.Corrected), Duplicates: int32(res.Duplicates),
		UnknownRepExternalIds: res.UnknownReps,
	}
	for _, r := range res.Rejected {
		out.Rejected = append(out.Rejected, &rallyev1.RowError{Index: proto.Int32(int32(r.Index)), Field: r.Field, Message: r.Message})
	}
	for _, r := range res.Parked {
		out.Parked = append(out.Parked, &rallyev1.ParkedRow{Index: proto.Int32(int32(r.Index)), RepExternalId: r.RepExternalID})
	}
	return out, nil
}

func (h *eventHandler) ListParkedEvents(ctx context.Context, req *rallyev1.ListParkedEventsRequest) (*rallyev1.ListParkedEventsResponse, error) {
	p, _ := rallye.PrincipalFrom(ctx)
	cursor, err := page.Decode(req.GetPageToken())
	if err != nil {
		return nil, err
	}
	size := page.Size(req.GetPageSize())
	parked, err := h.store.ListParked(ctx, p, event.ParkedQuery{Size: size, Cursor: cursor, RepExternalID: req.GetRepExternalId()})
	if err != nil {
		return nil, err
	}
	res := &rallyev1.ListParkedEventsResponse{}
	for _, pk := range parked {
		res.ParkedEvents = append(res.ParkedEvents, &rallyev1.ParkedEvent{
			Id: pk.ID.String(), Event: eventToProto(pk.Event), ParkTime: timestamp(pk.ParkedAt), ExpireTime: timestamp(pk.ExpiresAt),
		})
	}
	if len(parked) > 0 {
		res.NextPageToken = page.Next(parked[len(parked)-1].ID, len(parked), size)
	}
	return res, nil
}

func (h *eventHandler) ListEvents(ctx context.Context, req *rallyev1.ListEventsRequest) (*rallyev1.ListEventsResponse, error) {
	p, _ := rallye.PrincipalFrom(ctx)
	cursor, err := page.Decode(req.GetPageToken())
	if err != nil {
		return nil, err
	}
	rep, err := parseOptionalID("rep_id", req.GetRepId())
	if err != nil {
		return nil, err
	}
	size := page.Size(req.GetPageSize())
	events, err := h.store.List(ctx, p, event.ListRequest{
		Size: size, Cursor: cursor, Type: event.Type(req.GetType()), Source: req.GetSource(), RepID: rep,
	})
	if err != nil {
		return nil, err
	}
	res := &rallyev1.ListEventsResponse{}
	for _, st := range events {
		res.Events = append(res.Events, &rallyev1.StoredEvent{
			Event: eventToProto(st.Event), RepId: idString(st.Event.UserID), TeamIds: idStrings(st.Event.TeamIDs),
			Counted: st.Counted, ReceiveTime: timestamp(st.Event.ReceivedAt),
		})
	}
	if len(events) > 0 {
		res.NextPageToken = page.Next(events[len(events)-1].Event.VersionID, len(events), size)
	}
	return res, nil
}

func (h *eventHandler) GetSourceWatermarks(ctx context.Context, _ *rallyev1.GetSourceWatermarksRequest) (*rallyev1.GetSourceWatermarksResponse, error) {
	p, _ := rallye.PrincipalFrom(ctx)
	marks, err := h.store.Watermarks(ctx, p.TenantID)
	if err != nil {
		return nil, err
	}
	res := &rallyev1.GetSourceWatermarksResponse{}
	for _, m := range marks {
		res.Sources = append(res.Sources, &rallyev1.SourceWatermark{
			Source: m.Source, NewestEventTime: timestamp(m.NewestEvent), LastReceiveTime: timestamp(m.LastReceived), Events: m.Events,
		})
	}
	return res, nil
}

func eventFromProto(in *rallyev1.SalesEvent) (event.Row, error) {
	rep, err := parseOptionalID("rep_id", in.GetRepId())
	if err != nil {
		return event.Row{}, err
	}
	e := event.Event{
		Source: in.GetSource(), ExternalID: in.GetExternalId(), Revision: in.GetRevision(), Type: event.Type(in.GetType()),
		Retracted: in.GetRetracted(), UserID: rep, RepExternalID: in.GetRepExternalId(),
		AccountID: in.GetAccountId(), OpportunityID: in.GetOpportunityId(), LeadID: in.GetLeadId(),
		Amount: in.GetAmount().GetMinorUnits(), Currency: in.GetAmount().GetCurrency(), GrossMargin: in.GetGrossMargin().GetMinorUnits(),
		Segment: in.GetSegment(), Product: in.GetProduct(), DealKind: in.GetDealKind(), Stage: in.GetStage(), FromStage: in.GetFromStage(),
		DiscoveryCompleted: in.GetDiscoveryCompleted(), ContentID: in.GetContentId(), Channel: in.GetChannel(), Attributes: in.GetAttributes(),
	}
	if in.Score != nil {
		s := in.GetScore()
		e.Score = &s
	}
	if in.GrossMargin != nil && in.Amount != nil && in.GetGrossMargin().GetCurrency() != in.GetAmount().GetCurrency() {
		return event.Row{}, rallye.Invalid("gross_margin.currency", "must be the amount's currency")
	}
	for _, t := range []struct {
		field string
		dst   *time.Time
		from  *timestamppb.Timestamp
	}{
		{"occurred_at", &e.OccurredAt, in.GetOccurredAt()},
		{"opportunity_created_at", &e.OpportunityCreatedAt, in.GetOpportunityCreatedAt()},
		{"stage_entered_at", &e.StageEnteredAt, in.GetStageEnteredAt()},
		{"lead_created_at", &e.LeadCreatedAt, in.GetLeadCreatedAt()},
		{"ticket_opened_at", &e.TicketOpenedAt, in.GetTicketOpenedAt()},
	} {
		if t.from == nil {
			continue // absent: the domain says which times a type requires
		}
		if err := t.from.CheckValid(); err != nil {
			return event.Row{}, rallye.Invalid(t.field, "is not a valid timestamp (years 0001 to 9999, nanos below 10^9)")
		}
		// The domain reads a zero time as absent: a time that was sent
		// but reads as zero (0001-01-01T00:00:00Z) is refused as such.
		if *t.dst = t.from.AsTime(); t.dst.IsZero() {
			return event.Row{}, event.TooEarly(t.field, *t.dst)
		}
	}
	return event.Row{Event: e, HasAmount: in.Amount != nil}, nil
}

func optionalTime(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

func eventToProto(e event.Event) *rallyev1.SalesEvent {
	out := &rallyev1.SalesEvent{
		Source: e.Source, ExternalId: e.ExternalID, Revision: e.Revision, Type: string(e.Type),
		OccurredAt: timestamppb.New(e.OccurredAt), Retracted: e.Retracted, RepExternalId: e.RepExternalID,
		AccountId: e.AccountID, OpportunityId: e.OpportunityID, LeadId: e.LeadID, Segment: e.Segment, Product: e.Product,
		DealKind: e.DealKind, OpportunityCreatedAt: optionalTime(e.OpportunityCreatedAt), Stage: e.Stage, FromStage: e.FromStage,
		StageEnteredAt: optionalTime(e.StageEnteredAt), LeadCreatedAt: optionalTime(e.LeadCreatedAt),
		TicketOpenedAt: optionalTime(e.TicketOpenedAt), Score: e.Score, DiscoveryCompleted: e.DiscoveryCompleted,
		ContentId: e.ContentID, Channel: e.Channel, Attributes: e.Attributes,
	}
	if e.RepExternalID == "" && e.UserID != uuid.Nil {
		out.RepId = e.UserID.String()
	}
	if e.Amount != 0 || e.Currency != "" {
		out.Amount = &rallyev1.Money{MinorUnits: e.Amount, Currency: e.Currency}
	}
	if e.GrossMargin != 0 {
		out.GrossMargin = &rallyev1.Money{MinorUnits: e.GrossMargin, Currency: e.Currency}
	}
	return out
}
