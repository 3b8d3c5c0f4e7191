package postgres

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/rallyehq/rallye/internal/rallye"
)

// IsUnavailable reports whether err says PostgreSQL was momentarily out of
// reach or asked for the transaction to be tried again: a lost, refused or
// closed connection, a server shutting down or starting (57P01, 57P02,
// 57P03), too many connections (53300), a connection exception (class 08),
// a serialization failure (40001) or a deadlock (40P01). Such errors say
// nothing about the request: the same call may succeed a moment later.
func IsUnavailable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "57P01", "57P02", "57P03", "53300", "40001", "40P01":
			return true
		}
		return strings.HasPrefix(pgErr.Code, "08")
	}
	var connectErr *pgconn.ConnectError
	if errors.As(err, &connectErr) {
		return true
	}
	if errors.Is(err, pgconn.ErrConnClosed) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
		return true
	}
	var netErr net.Error
	return errors.As(err, &netErr)
}

// IsDriverError reports whether err certainly comes from PostgreSQL's
// driver: an error the server sent, a failed connection attempt, or a
// closed connection. (A bare network error could come from Redis too.)
func IsDriverError(err error) bool {
	var pgErr *pgconn.PgError
	var connectErr *pgconn.ConnectError
	return errors.As(err, &pgErr) || errors.As(err, &connectErr) || errors.Is(err, pgconn.ErrConnClosed)
}

// Reasons of the unavailable errors, in google.rpc.ErrorInfo.
const (
	// ReasonUnavailable: PostgreSQL could not be reached.
	ReasonUnavailable = "DATABASE_UNAVAILABLE"
	// ReasonContention: concurrent transactions kept conflicting (deadlocks
	// or serialization failures) after the server's own retries.
	ReasonContention = "DATABASE_CONTENTION"
)

// retryAfter is what clients are told to wait before they retry.
const retryAfter = time.Second

// Unavailable returns err as a CodeUnavailable domain error when
// IsUnavailable(err), and err unchanged otherwise. The cause stays in the
// chain (for logs and for errors.As).
func Unavailable(err error) error {
	if !IsUnavailable(err) {
		return err
	}
	if e, ok := rallye.AsError(err); ok && e.Code == rallye.CodeUnavailable {
		return err
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && (pgErr.Code == "40001" || pgErr.Code == "40P01") {
		return &rallye.Error{Code: rallye.CodeUnavailable, Reason: ReasonContention, RetryAfter: retryAfter, Cause: err,
			Message: "too many concurrent changes to the same data; retry with backoff"}
	}
	return &rallye.Error{Code: rallye.CodeUnavailable, Reason: ReasonUnavailable, RetryAfter: retryAfter, Cause: err,
		Message: "the database is momentarily unavailable; retry with backoff"}
}
