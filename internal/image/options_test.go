package image

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParsePlatforms(t *testing.T) {
	tests := []struct {
		list    string
		want    []string
		wantErr string
	}{
		{list: "", want: []string{"linux/amd64", "linux/arm64", "linux/arm/v7", "linux/386", "linux/ppc64le", "linux/s390x", "linux/riscv64"}},
		{list: "all", want: []string{"linux/amd64", "linux/arm64", "linux/arm/v7", "linux/386", "linux/ppc64le", "linux/s390x", "linux/riscv64"}},
		{list: "linux/arm/v7, linux/s390x", want: []string{"linux/arm/v7", "linux/s390x"}},
		{list: "linux/arm", wantErr: `unknown platform "linux/arm": pqedge's image has linux/amd64, linux/arm64, linux/arm/v7`},
		{list: "windows/amd64", wantErr: "unknown platform"},
	}
	for _, tt := range tests {
		ps, err := ParsePlatforms(tt.list)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParsePlatforms(%q) error %v, want %q", tt.list, err, tt.wantErr)
			}
			continue
		}
		var got []string
		for _, p := range ps {
			got = append(got, p.String())
		}
		if err != nil || strings.Join(got, " ") != strings.Join(tt.want, " ") {
			t.Errorf("ParsePlatforms(%q) = %v, %v; want %v", tt.list, got, err, tt.want)
		}
	}
}

// TestBuildRefuses: mistakes in Options are reported before anything is
// compiled or written.
func TestBuildRefuses(t *testing.T) {
	s390x, _ := ParsePlatforms("linux/s390x")
	tests := []struct {
		name    string
		opts    Options
		wantErr string
	}{
		{name: "no source", opts: Options{Out: t.TempDir()}, wantErr: "needs Source and Out"},
		{name: "version not a tag", opts: Options{Source: ".", Out: t.TempDir(), Version: "v1/2"}, wantErr: `version "v1/2" cannot be an image tag`},
		{name: "no platforms", opts: Options{Source: ".", Out: t.TempDir(), Platforms: []Platform{}}, wantErr: "no platform to build"},
		{name: "load not built", opts: Options{Source: ".", Out: t.TempDir(), Platforms: Platforms[:1], Load: &s390x[0]},
			wantErr: "the docker tarball's platform linux/s390x is not among those built"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Build(context.Background(), tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Build error %v, want %q", err, tt.wantErr)
			}
			if tt.opts.Out != "" {
				if entries, _ := os.ReadDir(tt.opts.Out); len(entries) > 0 {
					t.Errorf("a refused build left %d entries in Out", len(entries))
				}
			}
		})
	}
}

// TestRemoveLayoutRefusesOtherDirectories: Out/oci is replaced only when it
// is an earlier OCI layout, never a directory the user keeps other files in.
func TestRemoveLayoutRefusesOtherDirectories(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "oci")
	os.MkdirAll(dir, 0o755)
	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("mine"), 0o644)
	if err := removeLayout(dir); err == nil || !strings.Contains(err.Error(), "is not an OCI layout") {
		t.Fatalf("removeLayout of a foreign directory: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "notes.txt")); err != nil {
		t.Fatal("removeLayout deleted a file it does not own")
	}
	os.WriteFile(filepath.Join(dir, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644)
	if err := removeLayout(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("an earlier layout was not removed: %v", err)
	}
}

// TestLayerReproducible: the same binary and time give the same layer
// bytes, so the same commit gives the same image digests.
func TestLayerReproducible(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "pqedge")
	os.WriteFile(bin, []byte("\x7fELF not really"), 0o700)
	when := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	var layers [][]byte
	for i := range 2 {
		file := filepath.Join(dir, "layer.tar")
		if err := writeLayer(file, rootFS(bin), when); err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(file)
		layers = append(layers, b)
		if i == 0 {
			// A different mode and mtime on the build host must not show.
			os.Chmod(bin, 0o755)
			os.Chtimes(bin, time.Now(), time.Now())
		}
	}
	if !bytes.Equal(layers[0], layers[1]) {
		t.Error("two layers of the same binary differ")
	}
}
