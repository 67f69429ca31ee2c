package fleet

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/redis/go-redis/v9"
)

// SetClientLogger sends go-redis's own log lines (a refused dial, a pool
// failing over) to l at debug level instead of the standard library's
// logger on stderr: the Fleet already logs each outage once, at its start
// and end, with the store's address. go-redis keeps its logger in a
// process-wide variable, so call this once, from main, before New.
func SetClientLogger(l *slog.Logger) {
	redis.SetLogger(clientLogger{l})
}

type clientLogger struct{ l *slog.Logger }

func (c clientLogger) Printf(ctx context.Context, format string, v ...any) {
	c.l.DebugContext(ctx, fmt.Sprintf(format, v...), "component", "go-redis")
}
