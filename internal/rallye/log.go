package rallye

import (
	"context"
	"log/slog"
)

type loggerKey struct{}

// WithLogger returns a context carrying a request-scoped logger (one that
// already has the request id, procedure and principal attached).
func WithLogger(ctx context.Context, l *slog.Logger) context.Context {
	return context.WithValue(ctx, loggerKey{}, l)
}

// Logger returns the request-scoped logger, or slog.Default().
func Logger(ctx context.Context) *slog.Logger {
	if l, ok := ctx.Value(loggerKey{}).(*slog.Logger); ok {
		return l
	}
	return slog.Default()
}
