package rallye

import (
	"context"
	"log/slog"
	"sync"
)

type loggerKey struct{}

// lazyLogger builds the request logger on first use: most requests log
// nothing, and a logger with attributes costs allocations on a hot path.
type lazyLogger struct {
	once  sync.Once
	build func() *slog.Logger
	l     *slog.Logger
}

// WithLogger returns a context carrying a request-scoped logger (one that
// already has the request id, procedure and principal attached).
func WithLogger(ctx context.Context, l *slog.Logger) context.Context {
	return context.WithValue(ctx, loggerKey{}, l)
}

// WithLazyLogger is WithLogger for a logger built only if something logs.
func WithLazyLogger(ctx context.Context, build func() *slog.Logger) context.Context {
	return context.WithValue(ctx, loggerKey{}, &lazyLogger{build: build})
}

// Logger returns the request-scoped logger, or slog.Default().
func Logger(ctx context.Context) *slog.Logger {
	switch l := ctx.Value(loggerKey{}).(type) {
	case *slog.Logger:
		return l
	case *lazyLogger:
		l.once.Do(func() { l.l = l.build() })
		return l.l
	}
	return slog.Default()
}
