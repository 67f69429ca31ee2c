package acme

import (
	"context"
	"errors"
	"time"
)

// EventKind says what happened to a certificate.
type EventKind string

// Event kinds reported through Options.OnEvent.
const (
	// EventObtained: a first certificate for the names was issued.
	EventObtained EventKind = "obtained"
	// EventRenewed: a certificate was renewed; new handshakes get it as soon
	// as certmagic has loaded it into its cache (right after the event).
	EventRenewed EventKind = "renewed"
	// EventFailed: obtaining or renewing failed. A failed renewal keeps the
	// current certificate in service and is retried with backoff.
	EventFailed EventKind = "failed"
)

// Event reports one certificate operation, for metrics and alerts.
type Event struct {
	Kind  EventKind
	Names []string // the certificate's names (one per certificate today)
	// Renewal is true when the operation replaced an existing certificate,
	// so a failed renewal can be told from a failed first issuance.
	Renewal bool
	Err     error // set for EventFailed
	Time    time.Time
}

// certmagic event names this package translates. Others (handshakes,
// caching, OCSP) are not emitted at all: see ShouldEmitFunc in New.
const (
	cmEventObtained = "cert_obtained"
	cmEventFailed   = "cert_failed"
)

func shouldEmit(event string) bool {
	return event == cmEventObtained || event == cmEventFailed
}

// onCertmagicEvent is certmagic's OnEvent. certmagic calls it synchronously
// from the goroutine doing the ACME work: the caller of Manage or RenewNow,
// or certmagic's renewal worker. It never aborts anything: the two events it
// handles happen after the fact, and certmagic ignores errors from them.
func (m *Manager) onCertmagicEvent(_ context.Context, name string, data map[string]any) error {
	ev, ok := translateEvent(name, data, time.Now())
	if !ok {
		return nil
	}
	switch ev.Kind {
	case EventFailed:
		m.log.Error("acme certificate failed", "names", ev.Names, "renewal", ev.Renewal,
			"directory", m.directory, "error", ev.Err)
	default:
		m.log.Info("acme certificate "+string(ev.Kind), "names", ev.Names, "directory", m.directory)
	}
	if m.onEvent != nil {
		m.onEvent(ev)
	}
	return nil
}

// translateEvent maps a certmagic event to an Event. It reads only keys
// certmagic v0.25 sets for these events ("identifier", "renewal", "error")
// and tolerates their absence, since the data map is not a typed API.
func translateEvent(name string, data map[string]any, now time.Time) (Event, bool) {
	ev := Event{Time: now}
	switch name {
	case cmEventObtained:
		ev.Kind = EventObtained
	case cmEventFailed:
		ev.Kind = EventFailed
	default:
		return Event{}, false
	}
	if id, ok := data["identifier"].(string); ok && id != "" {
		ev.Names = []string{id}
	}
	ev.Renewal, _ = data["renewal"].(bool)
	if ev.Kind == EventObtained && ev.Renewal {
		ev.Kind = EventRenewed
	}
	if ev.Kind == EventFailed {
		if err, ok := data["error"].(error); ok {
			ev.Err = err
		} else {
			ev.Err = errors.New("certmagic reported a failure without an error")
		}
	}
	return ev, true
}
