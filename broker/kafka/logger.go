package kafka

import (
	"context"
	"log/slog"

	"github.com/twmb/franz-go/pkg/kgo"
)

// slogAdapter hands franz-go's log to a slog.Logger. franz-go's errors and
// warnings (a broker unreachable, a connection lost, a produce retried)
// keep their level; its info messages (connections opened, metadata
// refreshed) are chatty and go to debug; its debug messages are dropped.
// franz-go logs no credentials.
type slogAdapter struct{ log *slog.Logger }

func (a slogAdapter) Level() kgo.LogLevel {
	ctx := context.Background()
	switch {
	case a.log.Enabled(ctx, slog.LevelDebug):
		return kgo.LogLevelInfo
	case a.log.Enabled(ctx, slog.LevelWarn):
		return kgo.LogLevelWarn
	case a.log.Enabled(ctx, slog.LevelError):
		return kgo.LogLevelError
	default:
		return kgo.LogLevelNone
	}
}

func (a slogAdapter) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	var l slog.Level
	switch level {
	case kgo.LogLevelError:
		l = slog.LevelError
	case kgo.LogLevelWarn:
		l = slog.LevelWarn
	case kgo.LogLevelInfo:
		l = slog.LevelDebug
	default:
		return
	}
	a.log.Log(context.Background(), l, "kafka: "+msg, keyvals...)
}
