package api

import (
	"bytes"
	"errors"
	"io"
	"math"
	"net/http"
	"strconv"
	"time"

	"buf.build/go/protovalidate"
	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protojson"

	rallyev1 "github.com/rallyehq/rallye/gen/rallye/v1"
	"github.com/rallyehq/rallye/gen/rallye/v1/rallyev1connect"
)

// WebhookPath receives events as plain JSON, for CRMs whose webhooks cannot
// speak Connect. It feeds the same path as EventService.IngestEvents.
const WebhookPath = "/webhooks/events"

// eventWebhook accepts POST bodies of the form {"events": [...]}, a bare
// array of events, or a single event, in SalesEvent's JSON form. The API key
// comes in "Authorization: Bearer rly_..." or, for tools that only set
// custom headers, "X-Rallye-Api-Key". Unknown JSON fields are ignored so that
// a source may send more than Rallye reads.
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
		if wait, ok := retryDelay(err); ok { // 503: HTTP clients honour Retry-After
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
	req, err := decodeWebhook(body)
	if err != nil {
		fail(connect.NewError(connect.CodeInvalidArgument, err))
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

func decodeWebhook(body []byte) (*rallyev1.IngestEventsRequest, error) {
	trimmed := bytes.TrimSpace(body)
	req := &rallyev1.IngestEventsRequest{}
	switch {
	case len(trimmed) == 0:
		return nil, errors.New("events: the body is empty")
	case trimmed[0] == '[':
		if err := lenient.Unmarshal(append(append([]byte(`{"events":`), trimmed...), '}'), req); err != nil {
			return nil, errors.New("events: not a JSON array of events: " + err.Error())
		}
	default:
		if err := lenient.Unmarshal(trimmed, req); err != nil || len(req.Events) == 0 {
			single := &rallyev1.SalesEvent{}
			if err2 := lenient.Unmarshal(trimmed, single); err2 != nil {
				return nil, errors.New("events: not an event, a list of events or {\"events\": [...]}")
			}
			req.Events = []*rallyev1.SalesEvent{single}
		}
	}
	return req, nil
}
