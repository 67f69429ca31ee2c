package pages

import (
	"testing"
	"time"

	"github.com/pqedge/pqedge/pqtls"
)

// TestAdoptionWindows drives the per-minute ring with an injected clock.
func TestAdoptionWindows(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 30, 0, time.UTC)
	type rec struct {
		at     time.Duration // after t0
		family string
		pq     bool
	}
	tests := []struct {
		name       string
		recs       []rec
		now        time.Duration
		hour, day  [2]uint64 // total, pq
		hourFamily map[string][2]uint64
	}{
		{
			name: "same minute",
			recs: []rec{{0, pqtls.FamilyChromium, true}, {0, pqtls.FamilyChromium, true}, {10 * time.Second, pqtls.FamilyCurlOpenSSL, false}},
			now:  20 * time.Second,
			hour: [2]uint64{3, 2}, day: [2]uint64{3, 2},
			hourFamily: map[string][2]uint64{pqtls.FamilyChromium: {2, 2}, pqtls.FamilyCurlOpenSSL: {1, 0}},
		},
		{
			name: "older than an hour counts for the day only",
			recs: []rec{{0, pqtls.FamilyFirefox, true}, {61 * time.Minute, pqtls.FamilyGo, false}},
			now:  61 * time.Minute,
			hour: [2]uint64{1, 0}, day: [2]uint64{2, 1},
			hourFamily: map[string][2]uint64{pqtls.FamilyGo: {1, 0}},
		},
		{
			name: "older than a day is gone",
			recs: []rec{{0, pqtls.FamilyFirefox, true}, {24*time.Hour + time.Minute, pqtls.FamilyFirefox, false}},
			now:  24*time.Hour + time.Minute,
			hour: [2]uint64{1, 0}, day: [2]uint64{1, 0},
			hourFamily: map[string][2]uint64{pqtls.FamilyFirefox: {1, 0}},
		},
		{
			// The same ring slot a day later must be reset, not added to.
			name: "slot reused after a day",
			recs: []rec{{0, pqtls.FamilyChromium, true}, {24 * time.Hour, pqtls.FamilyChromium, false}},
			now:  24 * time.Hour,
			hour: [2]uint64{1, 0}, day: [2]uint64{1, 0},
			hourFamily: map[string][2]uint64{pqtls.FamilyChromium: {1, 0}},
		},
		{
			name: "unknown family and future buckets",
			recs: []rec{{0, "unknown", true}, {0, "brand-new-browser", false}, {2 * time.Minute, pqtls.FamilyGo, true}},
			now:  time.Minute,
			hour: [2]uint64{2, 1}, day: [2]uint64{2, 1},
			hourFamily: map[string][2]uint64{"unknown": {1, 1}, pqtls.FamilyOther: {1, 0}},
		},
		{name: "empty", now: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := &Adoption{}
			for _, r := range tt.recs {
				a.Record(t0.Add(r.at), r.family, r.pq)
			}
			rep := a.Report(t0.Add(tt.now))
			hour, day := rep.Windows[0], rep.Windows[1]
			if got := [2]uint64{hour.Total, hour.PQ}; got != tt.hour {
				t.Errorf("last hour total, pq = %v, want %v", got, tt.hour)
			}
			if got := [2]uint64{day.Total, day.PQ}; got != tt.day {
				t.Errorf("last day total, pq = %v, want %v", got, tt.day)
			}
			got := map[string][2]uint64{}
			for _, f := range hour.Families {
				got[f.Family] = [2]uint64{f.Total, f.PQ}
				if want := float64(f.PQ) / float64(f.Total); f.Share != want {
					t.Errorf("%s share %v, want %v", f.Family, f.Share, want)
				}
			}
			if len(got) != len(tt.hourFamily) {
				t.Errorf("last hour families %v, want %v", got, tt.hourFamily)
			}
			for f, want := range tt.hourFamily {
				if got[f] != want {
					t.Errorf("last hour %s = %v, want %v", f, got[f], want)
				}
			}
		})
	}
}

// TestAdoptionEndToEnd: requests to https:// upstreams count per window by
// whether their origin leg, and both legs, were post-quantum.
func TestAdoptionEndToEnd(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 30, 0, time.UTC)
	a := &Adoption{}
	for _, r := range []struct {
		at               time.Duration
		client, upstream bool
	}{
		{0, true, true}, {0, true, true}, {0, false, true}, {0, true, false},
		{-2 * time.Hour, true, true}, // the day only
	} {
		a.RecordOrigin(t0.Add(r.at), r.client, r.upstream)
	}
	rep := a.Report(t0)
	for i, want := range []AdoptionEndToEnd{
		{Requests: 4, OriginPQ: 3, PQ: 2, Share: 0.5},
		{Requests: 5, OriginPQ: 4, PQ: 3, Share: 0.6},
	} {
		if got := rep.Windows[i].EndToEnd; got != want {
			t.Errorf("%s: %+v, want %+v", rep.Windows[i].Name, got, want)
		}
	}
	if rep.Windows[0].Total != 0 {
		t.Errorf("origin requests counted as handshakes: %+v", rep.Windows[0])
	}
	if got := (&Adoption{}).Report(t0).Windows[0].EndToEnd; got != (AdoptionEndToEnd{}) {
		t.Errorf("empty: %+v", got)
	}
}
