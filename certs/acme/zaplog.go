package acme

import (
	"context"
	"log/slog"
	"slices"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// newZapLogger returns a zap logger whose entries go to h, so that certmagic
// (which logs through zap) writes into pqedge's slog stream. zapslog in the
// module graph converts the other way (slog calls into a zap core), which is
// why this small core exists.
func newZapLogger(h slog.Handler) *zap.Logger {
	return zap.New(&slogCore{h: h}).Named("certmagic")
}

// slogCore is a zapcore.Core writing to a slog.Handler.
//
// Levels: certmagic logs every lock, rate-limiter wait and ACME request at
// Info, several lines per certificate; Manager logs one Info line per
// obtained, renewed or failed certificate itself. So certmagic's Info becomes
// slog Debug, and Warn and Error stay as they are.
type slogCore struct {
	h slog.Handler
}

var _ zapcore.Core = (*slogCore)(nil)

func slogLevel(l zapcore.Level) slog.Level {
	switch {
	case l <= zapcore.InfoLevel:
		return slog.LevelDebug
	case l == zapcore.WarnLevel:
		return slog.LevelWarn
	default: // Error, DPanic, Panic, Fatal
		return slog.LevelError
	}
}

func (c *slogCore) Enabled(l zapcore.Level) bool {
	return c.h.Enabled(context.Background(), slogLevel(l))
}

func (c *slogCore) With(fields []zapcore.Field) zapcore.Core {
	if len(fields) == 0 {
		return c
	}
	return &slogCore{h: c.h.WithAttrs(fieldsToAttrs(fields))}
}

func (c *slogCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c *slogCore) Write(e zapcore.Entry, fields []zapcore.Field) error {
	r := slog.NewRecord(e.Time, slogLevel(e.Level), e.Message, 0)
	if e.LoggerName != "" {
		r.AddAttrs(slog.String("logger", e.LoggerName))
	}
	r.AddAttrs(fieldsToAttrs(fields)...)
	return c.h.Handle(context.Background(), r)
}

func (c *slogCore) Sync() error { return nil }

// fieldsToAttrs converts zap fields in order. Errors stay error values so
// slog handlers format them as they format pqedge's own errors; every other
// field goes through zap's map encoder, which knows all zap field types.
// zap.Namespace is not nested (certmagic does not use it).
func fieldsToAttrs(fields []zapcore.Field) []slog.Attr {
	attrs := make([]slog.Attr, 0, len(fields))
	for _, f := range fields {
		if f.Type == zapcore.ErrorType {
			if err, ok := f.Interface.(error); ok {
				attrs = append(attrs, slog.Any(f.Key, err))
				continue
			}
		}
		enc := zapcore.NewMapObjectEncoder()
		f.AddTo(enc)
		// One field can encode to more than one key (an error adds
		// "errorVerbose"); sort them so output is stable.
		keys := make([]string, 0, len(enc.Fields))
		for k := range enc.Fields {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			attrs = append(attrs, slog.Any(k, enc.Fields[k]))
		}
	}
	return attrs
}
