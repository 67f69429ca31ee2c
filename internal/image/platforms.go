package image

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sync/errgroup"
)

// Platform is one architecture of the image: how Go builds for it and how
// the OCI image index names it.
type Platform struct {
	GOARCH string
	GOARM  string // "7" for linux/arm/v7; empty elsewhere
	// OCI is the platform in the image index (OCI image-index spec,
	// "platform": architecture and variant use the GOARCH names).
	OCI v1.Platform
}

// String is the platform as docker and the OCI spec write it: linux/arm/v7.
func (p Platform) String() string { return p.OCI.String() }

// Platforms are the architectures `make image` builds, in index order.
var Platforms = []Platform{
	{GOARCH: "amd64", OCI: v1.Platform{OS: "linux", Architecture: "amd64"}},
	{GOARCH: "arm64", OCI: v1.Platform{OS: "linux", Architecture: "arm64"}},
	{GOARCH: "arm", GOARM: "7", OCI: v1.Platform{OS: "linux", Architecture: "arm", Variant: "v7"}},
	{GOARCH: "386", OCI: v1.Platform{OS: "linux", Architecture: "386"}},
	{GOARCH: "ppc64le", OCI: v1.Platform{OS: "linux", Architecture: "ppc64le"}},
	{GOARCH: "s390x", OCI: v1.Platform{OS: "linux", Architecture: "s390x"}},
	{GOARCH: "riscv64", OCI: v1.Platform{OS: "linux", Architecture: "riscv64"}},
}

// ParsePlatforms turns "linux/amd64,linux/arm/v7" into entries of
// [Platforms]; "" or "all" means all of them.
func ParsePlatforms(list string) ([]Platform, error) {
	if list == "" || list == "all" {
		return Platforms, nil
	}
	var out []Platform
	for _, name := range strings.Split(list, ",") {
		p, err := findPlatform(strings.TrimSpace(name))
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

func findPlatform(name string) (Platform, error) {
	for _, p := range Platforms {
		if p.String() == name {
			return p, nil
		}
	}
	names := make([]string, len(Platforms))
	for i, p := range Platforms {
		names[i] = p.String()
	}
	return Platform{}, fmt.Errorf("unknown platform %q: pqedge's image has %s", name, strings.Join(names, ", "))
}

// HostPlatform is the entry of [Platforms] this process runs on, for the
// platform put in the docker tarball; ok is false on other architectures.
func HostPlatform() (Platform, bool) {
	for _, p := range Platforms {
		if p.GOARCH == runtime.GOARCH {
			return p, true
		}
	}
	return Platform{}, false
}

// targetEnv are the variables that choose what `go build` compiles for;
// the builder sets them per platform and drops the caller's copies, so a
// GOARCH or GOAMD64 in the environment cannot leak into the image.
var targetEnv = []string{"GOOS", "GOARCH", "GOARM", "GOARM64", "GOAMD64", "GO386", "GOPPC64", "GORISCV64", "GOMIPS", "GOMIPS64", "GOWASM", "CGO_ENABLED"}

// compile builds one static pqedge binary per platform into dir, at most
// jobs `go build` processes at a time (each of them already uses every
// core, so more only thrashes a small machine). It returns the binaries'
// paths in platform order.
func compile(ctx context.Context, o *Options, dir string) ([]string, error) {
	paths := make([]string, len(o.Platforms))
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(o.Jobs)
	for i, p := range o.Platforms {
		paths[i] = filepath.Join(dir, "pqedge-"+strings.ReplaceAll(p.String(), "/", "-"))
		g.Go(func() error { return compileOne(ctx, o, p, paths[i]) })
	}
	return paths, g.Wait()
}

func compileOne(ctx context.Context, o *Options, p Platform, out string) error {
	logf(o.Log, "building %s", p)
	cmd := exec.CommandContext(ctx, o.Go, "build", "-trimpath",
		"-ldflags", "-s -w -X main.version="+o.Version,
		"-o", out, "./cmd/pqedge")
	cmd.Dir = o.Source
	cmd.Env = append(withoutVars(os.Environ(), targetEnv),
		"GOOS=linux", "GOARCH="+p.GOARCH, "CGO_ENABLED=0")
	if p.GOARM != "" {
		cmd.Env = append(cmd.Env, "GOARM="+p.GOARM)
	}
	if msg, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("failed to build pqedge for %s: %w\n%s", p, err, msg)
	}
	return nil
}

func withoutVars(env, names []string) []string {
	var out []string
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		if !slices.Contains(names, name) {
			out = append(out, kv)
		}
	}
	return out
}

func logf(w io.Writer, format string, a ...any) {
	if w != nil {
		fmt.Fprintf(w, format+"\n", a...)
	}
}
