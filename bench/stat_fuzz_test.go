package bench

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParseStat feeds /proc/PID/stat lines, seeded with real ones, to the
// parser: it must never panic, and a parsed line has sane times.
func FuzzParseStat(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/stat-*.txt")
	for _, s := range seeds {
		data, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("7 (a) b) c) S 1 2 3 4 5 6 7 8 9 10 11 12 13"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if _, err := parseStat(data); err == nil && !bytes.Contains(data, []byte(")")) {
			t.Fatal("parsed a line without the ')' that ends the command name")
		}
	})
}

func TestParseStatRealCaptures(t *testing.T) {
	seeds, _ := filepath.Glob("testdata/stat-*.txt")
	if len(seeds) == 0 {
		t.Fatal("no captures in testdata")
	}
	for _, s := range seeds {
		t.Run(filepath.Base(s), func(t *testing.T) {
			data, err := os.ReadFile(s)
			if err != nil {
				t.Fatal(err)
			}
			st, err := parseStat(data)
			if err != nil {
				t.Fatal(err)
			}
			if st.utime < 0 || st.stime < 0 || st.ppid < 0 {
				t.Errorf("parsed %+v", st)
			}
		})
	}
}

// FuzzParseMachineBusy: /proc/stat, seeded with a real capture.
func FuzzParseMachineBusy(f *testing.F) {
	data, err := os.ReadFile("testdata/proc-stat.txt")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := parseMachineBusy(data)
		if err != nil {
			return
		}
		if !bytes.HasPrefix(data, []byte("cpu ")) {
			t.Fatalf("parsed %v from a file not starting with the aggregate cpu line", d)
		}
		if d < 0 {
			t.Fatalf("parsed a negative busy time %v", d)
		}
	})
}
