// Command mkimage builds pqedge's multi-arch container image without a
// container runtime; `make image` runs it from the module's root. See
// package internal/image for what the image holds.
//
//	go run ./internal/image/mkimage -out bin/image -version v1.2.0
//
// writes bin/image/oci (an OCI layout with the image index of every
// platform) and bin/image/pqedge.tar (`docker load -i`, one platform).
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/pqedge/pqedge/internal/image"
)

const usage = `usage: mkimage [-out DIR] [-version V] [-platforms LIST] [-load PLATFORM]

Builds pqedge for every platform and writes DIR/oci (OCI layout, multi-arch
index) and DIR/pqedge.tar (docker load, one platform). Run it from the
module's root. SOURCE_DATE_EPOCH (seconds) sets every timestamp, for
reproducible digests.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("mkimage", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage); fs.PrintDefaults() }
	out := fs.String("out", "bin/image", "output `DIR`")
	version := fs.String("version", "dev", "version stamped into the binary and used as the image tag")
	revision := fs.String("revision", "", "VCS revision for the org.opencontainers.image.revision label")
	source := fs.String("source", "", "URL for the org.opencontainers.image.source label")
	platforms := fs.String("platforms", "all", "comma-separated `LIST` of platforms, e.g. linux/amd64,linux/arm/v7")
	load := fs.String("load", "", "`PLATFORM` written to pqedge.tar (default: this machine's)")
	jobs := fs.Int("jobs", 0, "concurrent `go build` processes (default: the number of CPUs)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return 2
	}
	opts := image.Options{Source: ".", Out: *out, Version: *version, Revision: *revision, SourceURL: *source, Jobs: *jobs, Log: stderr}
	var err error
	if opts.Platforms, err = image.ParsePlatforms(*platforms); err != nil {
		return fail(stderr, err, "see -platforms in `mkimage -h`")
	}
	if *load != "" {
		ps, err := image.ParsePlatforms(*load)
		if err == nil && len(ps) != 1 {
			err = fmt.Errorf("bad -load %q: the docker tarball holds one platform", *load)
		}
		if err != nil {
			return fail(stderr, err, "name one platform of -platforms, e.g. -load linux/arm64")
		}
		opts.Load = &ps[0]
	}
	if opts.Created, err = sourceDate(os.Getenv("SOURCE_DATE_EPOCH")); err != nil {
		return fail(stderr, err, "set SOURCE_DATE_EPOCH to seconds since 1970, e.g. $(git log -1 --format=%ct)")
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	start := time.Now()
	res, err := image.Build(ctx, opts)
	if err != nil {
		return fail(stderr, err, "run it from the module's root (where go.mod is), as `make image` does")
	}
	fmt.Fprintf(stdout, "image index %s (%d platforms) in %s\n", res.Index, len(res.Images), time.Since(start).Round(time.Second))
	for _, b := range res.Images {
		fmt.Fprintf(stdout, "  %-15s %s\n", b.Platform, b.Digest)
	}
	fmt.Fprintf(stdout, "OCI layout: %s\ndocker load -i %s   # %s\n", res.Layout, res.Tarball, res.Tag)
	return 0
}

// sourceDate reads SOURCE_DATE_EPOCH (reproducible-builds.org/specs/
// source-date-epoch); "" means now.
func sourceDate(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	sec, err := strconv.ParseInt(s, 10, 64)
	if err != nil || sec < 0 {
		return time.Time{}, fmt.Errorf("bad SOURCE_DATE_EPOCH %q: want a non-negative integer", s)
	}
	return time.Unix(sec, 0), nil
}

func fail(stderr io.Writer, err error, hint string) int {
	fmt.Fprintf(stderr, "mkimage: error: %v\nhint: %s\n", err, hint)
	return 1
}
