package acme

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
)

// recordHandler keeps slog records for inspection.
type recordHandler struct {
	level slog.Level
	attrs []slog.Attr

	mu      *sync.Mutex
	records *[]slog.Record
}

func newRecordHandler(level slog.Level) *recordHandler {
	return &recordHandler{level: level, mu: &sync.Mutex{}, records: &[]slog.Record{}}
}

func (h *recordHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level }

func (h *recordHandler) Handle(_ context.Context, r slog.Record) error {
	r = r.Clone()
	r.AddAttrs(h.attrs...)
	h.mu.Lock()
	defer h.mu.Unlock()
	*h.records = append(*h.records, r)
	return nil
}

func (h *recordHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	h2 := *h
	h2.attrs = append(append([]slog.Attr(nil), h.attrs...), attrs...)
	return &h2
}

func (h *recordHandler) WithGroup(string) slog.Handler { return h }

func (h *recordHandler) all() []slog.Record {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]slog.Record(nil), *h.records...)
}

func attrMap(r slog.Record) map[string]slog.Value {
	m := map[string]slog.Value{}
	r.Attrs(func(a slog.Attr) bool {
		m[a.Key] = a.Value
		return true
	})
	return m
}

func TestZapToSlog(t *testing.T) {
	h := newRecordHandler(slog.LevelDebug)
	zl := newZapLogger(h).Named("obtain").With(zap.String("cache", "c1"))
	boom := errors.New("boom")
	zl.Info("lock acquired", zap.String("identifier", "a.example"), zap.Int("attempt", 2),
		zap.Duration("remaining", 3*time.Second), zap.Strings("sans", []string{"a.example", "b.example"}))
	zl.Warn("slow", zap.Bool("retry", true))
	zl.Error("could not get certificate", zap.Error(boom))

	recs := h.all()
	if len(recs) != 3 {
		t.Fatalf("got %d records, want 3", len(recs))
	}
	tests := []struct {
		msg   string
		level slog.Level
		check func(map[string]slog.Value) bool
	}{
		{"lock acquired", slog.LevelDebug, func(a map[string]slog.Value) bool {
			sans, _ := a["sans"].Any().([]any)
			return a["identifier"].String() == "a.example" && a["attempt"].Any() == int64(2) &&
				a["remaining"].Any() == 3*time.Second && len(sans) == 2 && a["cache"].String() == "c1"
		}},
		{"slow", slog.LevelWarn, func(a map[string]slog.Value) bool { return a["retry"].Any() == true }},
		{"could not get certificate", slog.LevelError, func(a map[string]slog.Value) bool {
			err, ok := a["error"].Any().(error)
			return ok && errors.Is(err, boom)
		}},
	}
	for i, tt := range tests {
		t.Run(tt.msg, func(t *testing.T) {
			r := recs[i]
			a := attrMap(r)
			if r.Message != tt.msg || r.Level != tt.level {
				t.Errorf("record = %q at %v, want %q at %v", r.Message, r.Level, tt.msg, tt.level)
			}
			if a["logger"].String() != "certmagic.obtain" {
				t.Errorf("logger = %q, want certmagic.obtain", a["logger"].String())
			}
			if !tt.check(a) {
				t.Errorf("attributes %v do not match", a)
			}
		})
	}
}

// certmagic's Info chatter is not even built when the handler is at Info:
// it maps to Debug.
func TestZapToSlogLevels(t *testing.T) {
	h := newRecordHandler(slog.LevelInfo)
	zl := newZapLogger(h)
	if ce := zl.Check(zap.InfoLevel, "x"); ce != nil {
		t.Error("zap Info is enabled on an Info slog handler; want it demoted to Debug")
	}
	if ce := zl.Check(zap.WarnLevel, "x"); ce == nil {
		t.Error("zap Warn is disabled on an Info slog handler")
	}
	zl.Info("dropped")
	zl.Error("kept")
	if recs := h.all(); len(recs) != 1 || recs[0].Message != "kept" {
		t.Errorf("records = %v, want only the error", recs)
	}
}
