package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/redis/go-redis/v9"
	"google.golang.org/genproto/googleapis/rpc/errdetails"

	"github.com/rallyehq/rallye/internal/postgres"
	"github.com/rallyehq/rallye/internal/rallye"
)

func TestErrorMappingCoversEveryCode(t *testing.T) {
	for _, code := range []rallye.Code{
		rallye.CodeInvalid, rallye.CodeNotFound, rallye.CodeAlreadyExists, rallye.CodeFailedPrecondition,
		rallye.CodePermissionDenied, rallye.CodeUnauthenticated, rallye.CodeResourceExhausted,
		rallye.CodeUnavailable, rallye.CodeInternal,
	} {
		if _, ok := connectCodes[code]; !ok {
			t.Errorf("domain code %q has no Connect code", code)
		}
	}
}

func TestToConnect(t *testing.T) {
	ctx := context.WithValue(context.Background(), requestInfoKey{}, &requestInfo{id: "req-42"})
	tests := []struct {
		name      string
		err       error
		code      connect.Code
		message   string // substring of the message
		field     string // expected BadRequest field, if any
		hideCause string // must not appear in the message
	}{
		{name: "InvalidNamesField", err: rallye.Invalid("user.email", "is not an e-mail address"),
			code: connect.CodeInvalidArgument, message: "user.email: is not an e-mail address", field: "user.email"},
		{name: "WrappedNotFound", err: fmt.Errorf("load: %w", rallye.NotFound("team")),
			code: connect.CodeNotFound, message: "team not found"},
		{name: "AlreadyExists", err: &rallye.Error{Code: rallye.CodeAlreadyExists, Field: "email", Message: "is taken"},
			code: connect.CodeAlreadyExists, message: "email: is taken", field: "email"},
		{name: "PlainErrorIsInternal", err: errors.New("pq: secret table exploded"),
			code: connect.CodeInternal, message: "req-42", hideCause: "secret table"},
		{name: "DomainInternalHidesCause", err: &rallye.Error{Code: rallye.CodeInternal, Message: "db password is hunter2"},
			code: connect.CodeInternal, message: "req-42", hideCause: "hunter2"},
		{name: "Canceled", err: fmt.Errorf("query: %w", context.Canceled), code: connect.CodeCanceled},
		{name: "ConnectInternalHidesCause", err: connect.NewError(connect.CodeInternal, errors.New("marshal message: seconds out of range")),
			code: connect.CodeInternal, message: "req-42", hideCause: "seconds out of range"},
		{name: "ConnectErrorPassesThrough", err: connect.NewError(connect.CodeInvalidArgument, errors.New("validation error: x")),
			code: connect.CodeInvalidArgument, message: "validation error: x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := toConnect(ctx, tt.err)
			if got.Code() != tt.code {
				t.Fatalf("code = %v, want %v", got.Code(), tt.code)
			}
			if !strings.Contains(got.Message(), tt.message) {
				t.Errorf("message %q does not contain %q", got.Message(), tt.message)
			}
			if tt.hideCause != "" && strings.Contains(got.Message(), tt.hideCause) {
				t.Errorf("message %q leaks the cause", got.Message())
			}
			if tt.field != "" {
				var found bool
				for _, d := range got.Details() {
					v, err := d.Value()
					if br, ok := v.(*errdetails.BadRequest); err == nil && ok {
						found = len(br.FieldViolations) == 1 && br.FieldViolations[0].Field == tt.field
					}
				}
				if !found {
					t.Errorf("no BadRequest detail naming %q", tt.field)
				}
			}
		})
	}
}

// TestDependencyErrorsAreUnavailable: PostgreSQL or Redis out of reach is
// unavailable, with the reason and a retry delay, never internal.
func TestDependencyErrorsAreUnavailable(t *testing.T) {
	ctx := context.WithValue(context.Background(), requestInfoKey{}, &requestInfo{id: "req-42"})
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	tests := []struct {
		name   string
		err    error
		reason string
		delay  time.Duration
	}{
		{"AdminShutdownAfterRetries", postgres.Unavailable(fmt.Errorf("insert events: %w",
			&pgconn.PgError{Code: "57P01", Message: "terminating connection due to administrator command"})),
			postgres.ReasonUnavailable, time.Second},
		{"DeadlockAfterRetries", postgres.Unavailable(&pgconn.PgError{Code: "40P01"}), postgres.ReasonContention, time.Second},
		{"SerializationAfterRetries", postgres.Unavailable(&pgconn.PgError{Code: "40001"}), postgres.ReasonContention, time.Second},
		{"RawAdminShutdown", fmt.Errorf("read: %w", &pgconn.PgError{Code: "57P01"}), postgres.ReasonUnavailable, time.Second},
		{"RawCannotConnectNow", &pgconn.PgError{Code: "57P03"}, postgres.ReasonUnavailable, time.Second},
		{"RedisRefused", fmt.Errorf("read ranking: %w", refused), ReasonCacheUnavailable, time.Second},
		{"RedisPoolTimeout", fmt.Errorf("read ranking: %w", redis.ErrPoolTimeout), ReasonCacheUnavailable, time.Second},
		{"RedisEOF", fmt.Errorf("read ranking: %w", io.EOF), ReasonCacheUnavailable, time.Second},
		{"BoardRebuilding", &rallye.Error{Code: rallye.CodeUnavailable, Reason: "BOARD_REBUILDING", Message: "rebuilding",
			RetryAfter: 3 * time.Second}, "BOARD_REBUILDING", 3 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := toConnect(ctx, tt.err)
			if got.Code() != connect.CodeUnavailable {
				t.Fatalf("code = %v (%v), want unavailable", got.Code(), got)
			}
			var reason string
			var delay time.Duration
			for _, d := range got.Details() {
				v, err := d.Value()
				if err != nil {
					t.Fatal(err)
				}
				switch v := v.(type) {
				case *errdetails.ErrorInfo:
					reason = v.Reason
				case *errdetails.RetryInfo:
					delay = v.GetRetryDelay().AsDuration()
				}
			}
			if reason != tt.reason || delay != tt.delay {
				t.Fatalf("reason %q, retry delay %s; want %q, %s", reason, delay, tt.reason, tt.delay)
			}
		})
	}
	// Not a dependency: still internal.
	if got := toConnect(ctx, &pgconn.PgError{Code: "23505"}); got.Code() != connect.CodeInternal {
		t.Fatalf("a unique violation reaching the transport is %v, want internal", got.Code())
	}
}
