package rallye

import (
	"errors"
	"fmt"
	"time"
)

// Code classifies a domain error. The transport layer maps each code to a
// protocol status in one table (internal/api).
type Code string

// Error codes. Messages attached to them are sentences safe to show a user.
const (
	// CodeInvalid: the request is malformed or breaks a rule; Field names the
	// offending field when there is one.
	CodeInvalid Code = "invalid"
	// CodeNotFound: the object does not exist in the caller's company.
	CodeNotFound Code = "not_found"
	// CodeAlreadyExists: a unique property (e-mail, external id...) is taken.
	CodeAlreadyExists Code = "already_exists"
	// CodeFailedPrecondition: the object is not in a state that allows the
	// operation (a challenge already ended, a wallet too low...).
	CodeFailedPrecondition Code = "failed_precondition"
	// CodePermissionDenied: the caller is known but may not do this.
	CodePermissionDenied Code = "permission_denied"
	// CodeUnauthenticated: no valid credentials.
	CodeUnauthenticated Code = "unauthenticated"
	// CodeResourceExhausted: a quota or a stock is used up.
	CodeResourceExhausted Code = "resource_exhausted"
	// CodeUnavailable: a dependency is down; retrying later may succeed.
	CodeUnavailable Code = "unavailable"
	// CodeInternal: a bug or an unexpected failure; the message is generic.
	CodeInternal Code = "internal"
)

// Error is the domain error. Lower layers wrap causes with fmt.Errorf("...: %w")
// and only the layer that knows what went wrong for the user builds an Error.
type Error struct {
	Code Code
	// Field is the path of the offending request field (for CodeInvalid),
	// such as "user.email" or "events[3].amount".
	Field string
	// Message is a sentence for the user.
	Message string
	// Reason is a stable machine-readable reason such as "REQUEST_ID_REUSED"
	// that apps may use to pick a localized text.
	Reason string
	// RetryAfter is how long a client should wait before retrying, for
	// CodeUnavailable (0: the transport's default).
	RetryAfter time.Duration
	// Cause is the underlying error, logged but never shown.
	Cause error
}

func (e *Error) Error() string {
	msg := e.Message
	if e.Field != "" {
		msg = e.Field + ": " + msg
	}
	if e.Cause != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, msg, e.Cause)
	}
	return fmt.Sprintf("%s: %s", e.Code, msg)
}

func (e *Error) Unwrap() error { return e.Cause }

// Errorf builds an Error with a formatted message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Invalid builds a CodeInvalid error naming a request field.
func Invalid(field, format string, args ...any) *Error {
	return &Error{Code: CodeInvalid, Field: field, Message: fmt.Sprintf(format, args...)}
}

// NotFound builds a CodeNotFound error for a kind of object ("team", "user").
func NotFound(kind string) *Error {
	return &Error{Code: CodeNotFound, Message: kind + " not found"}
}

// ErrorCode returns the code of the first Error in err's chain, CodeInternal
// for any other non-nil error and "" for nil.
func ErrorCode(err error) Code {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return CodeInternal
}

// AsError returns the first Error in err's chain, if any.
func AsError(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}
