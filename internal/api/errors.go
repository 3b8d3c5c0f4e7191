package api

import (
	"context"
	"errors"
	"fmt"

	"connectrpc.com/connect"
	"google.golang.org/genproto/googleapis/rpc/errdetails"

	"github.com/rallyehq/rallye/internal/rallye"
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

// toConnect turns any error a handler returns into a Connect error: domain
// errors keep their message (and name their field), Connect errors built by
// interceptors pass through, cancellations stay cancellations, and anything
// else becomes a generic Internal error that points at the request id (the
// cause is logged by the caller, not sent).
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
		return internalError(ctx)
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
	return out
}

// internalError is the answer to a failure of the server: no cause, only
// the request id under which the logs record it.
func internalError(ctx context.Context) *connect.Error {
	return connect.NewError(connect.CodeInternal,
		fmt.Errorf("internal error; quote request id %s to the support", requestID(ctx)))
}
