package fleet

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// FuzzDecodeTicketState: a state that decodes keeps every invariant the
// rotation relies on, and survives a re-encode.
func FuzzDecodeTicketState(f *testing.F) {
	sealed, err := os.ReadFile(filepath.Join("testdata", "tickets.sealed"))
	if err != nil {
		f.Fatal(err)
	}
	plain, err := testKey(f).Open(ticketsAD, sealed)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(plain)
	f.Add([]byte(`{"version":1,"generation":0,"next_id":0,"keys":[],"updated_by":"","updated_at":"0001-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"version":1,"keys":[{"id":1,"secret":"AAAA"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := decodeTicketState(data)
		if err != nil {
			return
		}
		again, err := st.encode()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := decodeTicketState(again); err != nil {
			t.Fatalf("re-encoded state refused: %v", err)
		}
		// Whatever it holds, planning a rotation from it yields a valid
		// state (or none).
		next, err := testRotation(1).plan(st, time.Unix(1<<31, 0))
		if err != nil || next == nil {
			return
		}
		out, _ := next.encode()
		if _, err := decodeTicketState(out); err != nil {
			t.Fatalf("plan made an invalid state from a valid one: %v", err)
		}
	})
}

// FuzzParseStoreURL: a URL that parses round-trips through String, and no
// error repeats a password.
func FuzzParseStoreURL(f *testing.F) {
	for _, s := range []string{
		"redis://127.0.0.1:6379/0", "rediss://pqedge@valkey.internal:6380/1",
		"unix:///run/valkey/valkey.sock?db=2", "redis://u:pw@h/0", "redis://[::1]/3",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := ParseStoreURL(s)
		if err != nil {
			if strings.Contains(s, ":SECRETPW@") && strings.Contains(err.Error(), "SECRETPW") {
				t.Fatalf("error repeats the password: %v", err)
			}
			return
		}
		again, err := ParseStoreURL(u.String())
		if err != nil || again != u {
			t.Fatalf("%q -> %+v -> %q -> %+v, %v", s, u, u.String(), again, err)
		}
	})
}
