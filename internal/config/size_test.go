package config

import "testing"

func TestParseSize(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want int64
		err  bool
	}{
		{in: "65536", want: 65536}, {in: "512B", want: 512}, {in: "64KiB", want: 64 << 10},
		{in: "1MiB", want: 1 << 20}, {in: "2GiB", want: 2 << 30}, {in: "64KB", want: 64000},
		{in: "1MB", want: 1000000}, {in: " 8 KiB ", want: 8 << 10},
		{in: "", err: true}, {in: "KiB", err: true}, {in: "-1KiB", err: true}, {in: "1.5MiB", err: true},
		{in: "64kib", err: true}, {in: "2TiB", err: true}, {in: "9999999999GiB", err: true},
	} {
		got, err := ParseSize(tt.in)
		if (err != nil) != tt.err || got != tt.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d, error %v", tt.in, got, err, tt.want, tt.err)
		}
	}
}

func TestFormatSize(t *testing.T) {
	for n, want := range map[int64]Size{65536: "64KiB", 1 << 20: "1MiB", 3 << 30: "3GiB", 1000: "1000B", 1536: "1536B"} {
		got := FormatSize(n)
		if got != want {
			t.Errorf("FormatSize(%d) = %q, want %q", n, got, want)
		}
		if back, err := ParseSize(string(got)); err != nil || back != n {
			t.Errorf("FormatSize(%d) = %q parses back as %d, %v", n, got, back, err)
		}
	}
}
