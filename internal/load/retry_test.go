package load

import (
	"context"
	"errors"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/types/known/durationpb"
)

func TestRetryUnavailable(t *testing.T) {
	unavailable := func(delay time.Duration) error {
		err := connect.NewError(connect.CodeUnavailable, errors.New("the database is momentarily unavailable"))
		if delay > 0 {
			d, _ := connect.NewErrorDetail(&errdetails.RetryInfo{RetryDelay: durationpb.New(delay)})
			err.AddDetail(d)
		}
		return err
	}
	tests := []struct {
		name      string
		errs      []error // answers before success
		wantCalls int
		wantCode  connect.Code // 0: success
		minWait   time.Duration
	}{
		{"SucceedsAfterUnavailable", []error{unavailable(0), unavailable(0)}, 3, 0, retryFirstWait/2 + retryFirstWait},
		{"HonoursRetryInfo", []error{unavailable(time.Second)}, 2, 0, 500 * time.Millisecond},
		{"OtherCodesAreNotRetried", []error{connect.NewError(connect.CodeInvalidArgument, errors.New("events: bad"))}, 1,
			connect.CodeInvalidArgument, 0},
		{"InternalIsNotRetried", []error{connect.NewError(connect.CodeInternal, errors.New("bug"))}, 1, connect.CodeInternal, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			calls, retries := 0, 0
			start := time.Now()
			_, err := retryUnavailable(context.Background(), func() { retries++ }, func() (int, error) {
				calls++
				if calls <= len(tt.errs) {
					return 0, tt.errs[calls-1]
				}
				return 1, nil
			})
			if calls != tt.wantCalls || retries != calls-1 {
				t.Fatalf("%d calls, %d retries; want %d calls", calls, retries, tt.wantCalls)
			}
			if (tt.wantCode == 0 && err != nil) || (tt.wantCode != 0 && connect.CodeOf(err) != tt.wantCode) {
				t.Fatalf("error %v, want code %v", err, tt.wantCode)
			}
			if took := time.Since(start); took < tt.minWait/2 {
				t.Fatalf("retried after %s, want at least %s", took, tt.minWait/2)
			}
		})
	}
}
