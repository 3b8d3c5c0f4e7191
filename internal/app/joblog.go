package app

import (
	"context"
	"log/slog"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
)

// jobQueueLogger is the logger River gets. River reports its routine steps
// (client started, leader elected, periodic jobs inserted, job counts,
// maintenance runs) at INFO: at rest they were most of the server's log
// (105 lines of 133). They are kept for RALLYE_LOG_LEVEL=debug; otherwise
// only River's warnings and errors pass. River also reports a failed job at
// INFO, so jobErrorLogger logs those itself, at WARN.
func jobQueueLogger(log *slog.Logger) *slog.Logger {
	min := slog.LevelWarn
	if log.Enabled(context.Background(), slog.LevelDebug) {
		min = slog.LevelInfo
	}
	return slog.New(minLevelHandler{Handler: log.Handler(), min: min})
}

// minLevelHandler drops the records below min and hands the others on.
type minLevelHandler struct {
	slog.Handler
	min slog.Level
}

func (h minLevelHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}

func (h minLevelHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return minLevelHandler{Handler: h.Handler.WithAttrs(attrs), min: h.min}
}

func (h minLevelHandler) WithGroup(name string) slog.Handler {
	return minLevelHandler{Handler: h.Handler.WithGroup(name), min: h.min}
}

// jobErrorLogger logs every failed or panicking job at WARN (River's own
// line for it is INFO, below the job queue's level) and leaves the retry
// policy alone.
type jobErrorLogger struct{ log *slog.Logger }

func (j jobErrorLogger) HandleError(ctx context.Context, job *rivertype.JobRow, err error) *river.ErrorHandlerResult {
	j.log.WarnContext(ctx, "job failed", "job_id", job.ID, "job_kind", job.Kind,
		"attempt", job.Attempt, "max_attempts", job.MaxAttempts, "error", err.Error())
	return nil
}

func (j jobErrorLogger) HandlePanic(ctx context.Context, job *rivertype.JobRow, panicVal any, trace string) *river.ErrorHandlerResult {
	j.log.ErrorContext(ctx, "job panicked", "job_id", job.ID, "job_kind", job.Kind,
		"attempt", job.Attempt, "panic", panicVal, "trace", trace)
	return nil
}
