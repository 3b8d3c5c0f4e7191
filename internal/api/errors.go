package api

import (
	"context"
	"errors"
	"fmt"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/rallyehq/rallye/internal/postgres"
	"github.com/rallyehq/rallye/internal/rallye"
	"github.com/rallyehq/rallye/internal/redisdb"
)

// connectCodes maps each domain error code to its protocol status. It is the
// only place where that decision is made.
var connectCodes = map[rallye.Code]connect.Code{
	rallye.CodeInvalid:            connect.CodeInvalidArgument,
	rallye.CodeNotFound:           connect.CodeNotFound,
	rallye.CodeAlreadyExists:      connect.CodeAlreadyExists,
	rallye.CodeFailedPrecondition: connect.CodeFailedPrecondition,
	rallye.CodePermissionDenied:   connect.CodePermissionDenied,
	rallye.CodeUnauthenticated:    connect.CodeUnauthenticated,
	rallye.CodeResourceExhausted:  connect.CodeResourceExhausted,
	rallye.CodeUnavailable:        connect.CodeUnavailable,
	rallye.CodeInternal:           connect.CodeInternal,
}

// ReasonCacheUnavailable is the google.rpc.ErrorInfo reason of an
// unavailable Redis.
const ReasonCacheUnavailable = "CACHE_UNAVAILABLE"

// defaultRetryAfter is the google.rpc.RetryInfo delay of unavailable errors
// that do not name one: clients wait at least that long, then back off.
const defaultRetryAfter = time.Second

// dependencyError gives a domain code to an error that reached the
// transport without one but says that PostgreSQL or Redis was momentarily
// out of reach (a connection lost outside a transaction, a Redis read):
// the client should retry, as for any unavailable error.
func dependencyError(err error) (*rallye.Error, bool) {
	switch {
	case postgres.IsDriverError(err) && postgres.IsUnavailable(err):
		return rallye.AsError(postgres.Unavailable(err))
	case redisdb.IsUnavailable(err):
		// PostgreSQL's errors are classified as they leave a transaction
		// (postgres.DB): a bare network error here is Redis's.
		return &rallye.Error{Code: rallye.CodeUnavailable, Reason: ReasonCacheUnavailable, Cause: err,
			Message: "the live data store is momentarily unavailable; retry with backoff"}, true
	}
	return nil, false
}

// toConnect turns any error a handler returns into a Connect error: domain
// errors keep their message (and name their field), Connect errors built by
// interceptors pass through, cancellations stay cancellations, PostgreSQL or
// Redis out of reach is Unavailable (with google.rpc.RetryInfo and
// ErrorInfo), and anything else becomes a generic Internal error that
// points at the request id (the cause is logged by the caller, not sent).
func toConnect(ctx context.Context, err error) *connect.Error {
	var ce *connect.Error
	if errors.As(err, &ce) {
		if ce.Code() != connect.CodeInternal && ce.Code() != connect.CodeUnknown {
			return ce
		}
		// Connect's own internal errors (a reply that would not encode on
		// a stream) are answered like ours: the cause goes to the logs.
		return internalError(ctx)
	}
	switch {
	case errors.Is(err, context.Canceled):
		return connect.NewError(connect.CodeCanceled, errors.New("the request was cancelled"))
	case errors.Is(err, context.DeadlineExceeded):
		return connect.NewError(connect.CodeDeadlineExceeded, errors.New("the request ran out of time"))
	}
	e, ok := rallye.AsError(err)
	if !ok || e.Code == rallye.CodeInternal {
		if e, ok = dependencyError(err); !ok {
			return internalError(ctx)
		}
	}
	code, ok := connectCodes[e.Code]
	if !ok {
		code = connect.CodeInternal
	}
	msg := e.Message
	if e.Field != "" {
		msg = e.Field + ": " + e.Message
	}
	out := connect.NewError(code, errors.New(msg))
	if e.Field != "" {
		if d, derr := connect.NewErrorDetail(&errdetails.BadRequest{
			FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: e.Field, Description: e.Message}},
		}); derr == nil {
			out.AddDetail(d)
		}
	}
	if e.Reason != "" {
		if d, derr := connect.NewErrorDetail(&errdetails.ErrorInfo{Reason: e.Reason, Domain: "rallye"}); derr == nil {
			out.AddDetail(d)
		}
	}
	// Unavailable always says when to retry; resource_exhausted when the
	// domain knows (ingestion's backpressure).
	if code == connect.CodeUnavailable || code == connect.CodeResourceExhausted && e.RetryAfter > 0 {
		wait := e.RetryAfter
		if wait <= 0 {
			wait = defaultRetryAfter
		}
		if d, derr := connect.NewErrorDetail(&errdetails.RetryInfo{RetryDelay: durationpb.New(wait)}); derr == nil {
			out.AddDetail(d)
		}
	}
	return out
}

// internalError is the answer to a failure of the server: no cause, only
// the request id under which the logs record it.
func internalError(ctx context.Context) *connect.Error {
	return connect.NewError(connect.CodeInternal,
		fmt.Errorf("internal error; quote request id %s to the support", requestID(ctx)))
}

// retryDelay returns the google.rpc.RetryInfo delay of err, if it has one.
func retryDelay(err error) (time.Duration, bool) {
	var ce *connect.Error
	if !errors.As(err, &ce) {
		return 0, false
	}
	for _, d := range ce.Details() {
		if v, derr := d.Value(); derr == nil {
			if ri, ok := v.(*errdetails.RetryInfo); ok {
				return ri.GetRetryDelay().AsDuration(), true
			}
		}
	}
	return 0, false
}
