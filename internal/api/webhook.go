package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"time"

	"buf.build/go/protovalidate"
	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	rallyev1 "github.com/rallyehq/rallye/gen/rallye/v1"
	"github.com/rallyehq/rallye/gen/rallye/v1/rallyev1connect"
	"github.com/rallyehq/rallye/internal/rallye"
)

// WebhookPath receives events as plain JSON, for CRMs whose webhooks cannot
// speak Connect. It feeds the same path as EventService.IngestEvents.
const WebhookPath = "/webhooks/events"

// eventWebhook accepts POST bodies of the form {"events": [...]}, a bare
// array of events, or a single event, in SalesEvent's JSON form. The API key
// comes in "Authorization: Bearer rly_..." or, for tools that only set
// custom headers, "X-Rallye-Api-Key". Unknown JSON fields are ignored so that
// a source may send more than Rallye reads, and the answer names them per
// event (IngestEventsResponse.ignored), so that a misnamed field (a flat
// amount_minor) is not dropped without a word; with ?strict=true they are
// refused instead, as Connect's JSON does.
type eventWebhook struct {
	guard     *guard
	observer  *observer
	events    *eventHandler
	validator protovalidate.Validator
	errors    *connect.ErrorWriter
	// maxBytes bounds the body, like RALLYE_MAX_REQUEST_BYTES bounds RPCs.
	maxBytes int64
}

func (h *eventWebhook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	ctx := h.observer.begin(r.Context(), WebhookPath)
	fail := func(err error) {
		err = h.observer.end(ctx, WebhookPath, start, err)
		if wait, ok := retryDelay(err); ok { // 503 or 429: HTTP clients honour Retry-After
			w.Header().Set("Retry-After", strconv.Itoa(max(1, int(math.Ceil(wait.Seconds())))))
		}
		_ = h.errors.Write(w, r, err)
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "POST events as JSON", http.StatusMethodNotAllowed)
		return
	}
	authz := r.Header.Get("Authorization")
	if key := r.Header.Get("X-Rallye-Api-Key"); authz == "" && key != "" {
		authz = "Bearer " + key
	}
	ctx, err := h.guard.admit(ctx, rallyev1connect.EventServiceIngestEventsProcedure, authz)
	if err != nil {
		fail(err)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.maxBytes))
	var overLimit *http.MaxBytesError
	switch {
	case errors.As(err, &overLimit):
		fail(connect.NewError(connect.CodeResourceExhausted, errors.New(tooLarge(h.maxBytes))))
		return
	case err != nil:
		fail(connect.NewError(connect.CodeInvalidArgument, errors.New("the request body could not be read")))
		return
	}
	req, ignored, err := decodeWebhook(body)
	if err != nil {
		fail(connect.NewError(connect.CodeInvalidArgument, err))
		return
	}
	if strict, _ := strconv.ParseBool(r.URL.Query().Get("strict")); strict && len(ignored) > 0 {
		fail(rallye.Invalid(fmt.Sprintf("events[%d].%s", ignored[0].GetIndex(), ignored[0].Fields[0]),
			"is not a SalesEvent field (strict=true refuses fields Rallye does not read)"))
		return
	}
	if err := h.validator.Validate(req); err != nil {
		fail(connect.NewError(connect.CodeInvalidArgument, err))
		return
	}
	res, err := h.events.IngestEvents(ctx, req)
	if err != nil {
		fail(err)
		return
	}
	res.Ignored = ignored
	out, err := protojson.Marshal(res)
	if err != nil {
		fail(err)
		return
	}
	h.observer.end(ctx, WebhookPath, start, nil)
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(out)
}

var lenient = protojson.UnmarshalOptions{DiscardUnknown: true}

// decodeWebhook reads the body's events, and the fields of each that
// SalesEvent does not have.
func decodeWebhook(body []byte) (*rallyev1.IngestEventsRequest, []*rallyev1.IgnoredFields, error) {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		return nil, nil, errors.New("events: the body is empty")
	}
	var raws []json.RawMessage
	switch trimmed[0] {
	case '[':
		if err := json.Unmarshal(trimmed, &raws); err != nil {
			return nil, nil, errors.New("events: not a JSON array of events: " + err.Error())
		}
	case '{':
		var wrapper struct {
			Events *[]json.RawMessage `json:"events"`
		}
		if err := json.Unmarshal(trimmed, &wrapper); err == nil && wrapper.Events != nil {
			raws = *wrapper.Events
		} else {
			raws = []json.RawMessage{trimmed}
		}
	default:
		return nil, nil, errors.New("events: not an event, a list of events or {\"events\": [...]}")
	}
	req := &rallyev1.IngestEventsRequest{Events: make([]*rallyev1.SalesEvent, len(raws))}
	var ignored []*rallyev1.IgnoredFields
	md := (&rallyev1.SalesEvent{}).ProtoReflect().Descriptor()
	for i, raw := range raws {
		ev := &rallyev1.SalesEvent{}
		if err := lenient.Unmarshal(raw, ev); err != nil {
			return nil, nil, fmt.Errorf("events[%d]: not a SalesEvent: %s", i, err.Error())
		}
		req.Events[i] = ev
		if fields := ignoredFields(raw, md); len(fields) > 0 {
			ignored = append(ignored, &rallyev1.IgnoredFields{Index: proto.Int32(int32(i)), Fields: fields})
		}
	}
	return req, ignored, nil
}
