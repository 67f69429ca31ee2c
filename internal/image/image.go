package image

import (
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Options says what to build and where.
type Options struct {
	// Source is the directory of pqedge's module (the one holding
	// cmd/pqedge). Required.
	Source string
	// Out is the output directory: the OCI layout goes to Out/oci and the
	// docker tarball to Out/pqedge.tar (see [Result]). Required.
	Out string

	// Version is stamped into the binary (`pqedge version`), the
	// org.opencontainers.image.version label and the tags; "" means "dev".
	Version string
	// Revision is the source's VCS revision for the
	// org.opencontainers.image.revision label; "" leaves the label out.
	Revision string
	// SourceURL is the org.opencontainers.image.source label; "" leaves it
	// out.
	SourceURL string
	// Created is every timestamp in the image, truncated to seconds; the
	// zero time means now. Set it (e.g. from SOURCE_DATE_EPOCH) for
	// reproducible digests.
	Created time.Time

	// Platforms to build; nil means all of [Platforms].
	Platforms []Platform
	// Load is the platform written to the docker tarball; nil means the
	// one this process runs on ([HostPlatform]), else the first one built.
	// It must be one of Platforms.
	Load *Platform
	// Repository is the tarball's image name, tagged with Version;
	// "" means "pqedge".
	Repository string

	// StoreLayers writes layers gzip-framed but uncompressed (level 0),
	// about twice the size. Tests under the race detector need it: there
	// compressing the layers (100 MB of binaries) takes many minutes.
	// Otherwise layers are compressed at gzip.BestSpeed.
	StoreLayers bool

	// Jobs bounds how many `go build` run at once; 0 means the number of
	// CPUs (at most the number of platforms).
	Jobs int
	// Go is the go command; "" means "go" from PATH.
	Go string
	// Log gets one line per step; nil is quiet.
	Log io.Writer
}

// Result is what Build wrote.
type Result struct {
	Layout  string  // the OCI layout directory (index.json, blobs/)
	Tarball string  // `docker load -i` this
	Tag     string  // the tarball's image name, e.g. pqedge:v1.2.0
	Index   v1.Hash // digest of the multi-arch image index
	Images  []Built // one per platform, in index order
}

// Built is one platform's image.
type Built struct {
	Platform Platform
	Digest   v1.Hash // the image manifest's digest
}

// HealthCheck is the image's HEALTHCHECK: Docker runs it in the container;
// it exits 0 when /readyz answers 200, else 1 (never 2, which Docker
// reserves). Interval and timeout are Docker's flags' values; the command's
// own -timeout stays below Timeout so it reports why before Docker kills it.
var HealthCheck = v1.HealthConfig{
	Test:        []string{"CMD", BinaryPath, "health", "-config", ConfigPath, "-timeout", "4s"},
	Interval:    10 * time.Second,
	Timeout:     5 * time.Second,
	StartPeriod: 30 * time.Second, // first start: local CA, or an ACME order
	Retries:     3,
}

// builder is the state of one Build: the options with defaults applied,
// then what each step made.
type builder struct {
	o        Options
	work     string   // temporary directory for binaries and layer tars
	binaries []string // per platform
	images   []v1.Image
	index    v1.ImageIndex
	res      Result
}

// Build compiles pqedge for every platform and writes the image. It
// replaces an earlier build in Out; ctx cancels the compilers.
func Build(ctx context.Context, opts Options) (*Result, error) {
	b := &builder{o: opts}
	if err := b.applyDefaults(); err != nil {
		return nil, err
	}
	work, err := os.MkdirTemp(b.o.Out, ".build-")
	if err != nil {
		return nil, fmt.Errorf("failed to make a work directory: %w", err)
	}
	defer os.RemoveAll(work)
	b.work = work

	steps := []struct {
		name string
		run  func(context.Context) error
	}{
		{"compile binaries", b.compileBinaries},
		{"assemble images", b.assembleImages},
		{"assemble index", b.assembleIndex},
		{"write OCI layout", b.writeLayout},
		{"write docker tarball", b.writeTarball},
	}
	for _, s := range steps {
		if err := s.run(ctx); err != nil {
			return nil, err
		}
	}
	return &b.res, nil
}

// tagPattern is a docker tag (distribution reference grammar).
var tagPattern = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)

func (b *builder) applyDefaults() error {
	o := &b.o
	if o.Source == "" || o.Out == "" {
		return errors.New("image.Options needs Source and Out")
	}
	if o.Version == "" {
		o.Version = "dev"
	}
	if !tagPattern.MatchString(o.Version) {
		return fmt.Errorf("version %q cannot be an image tag: use letters, digits, '_', '.' and '-' (at most 128)", o.Version)
	}
	if o.Created.IsZero() {
		o.Created = time.Now()
	}
	o.Created = o.Created.UTC().Truncate(time.Second)
	if o.Platforms == nil {
		o.Platforms = Platforms
	}
	if len(o.Platforms) == 0 {
		return errors.New("no platform to build")
	}
	if o.Load == nil {
		if p, ok := HostPlatform(); ok && containsPlatform(o.Platforms, p) {
			o.Load = &p
		} else {
			o.Load = &o.Platforms[0]
		}
	}
	if !containsPlatform(o.Platforms, *o.Load) {
		return fmt.Errorf("the docker tarball's platform %s is not among those built", o.Load)
	}
	if o.Repository == "" {
		o.Repository = "pqedge"
	}
	if o.Jobs <= 0 {
		o.Jobs = min(runtime.NumCPU(), len(o.Platforms))
	}
	if o.Go == "" {
		o.Go = "go"
	}
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return fmt.Errorf("failed to make the output directory: %w", err)
	}
	return nil
}

func containsPlatform(ps []Platform, p Platform) bool {
	for _, q := range ps {
		if q.String() == p.String() {
			return true
		}
	}
	return false
}

func (b *builder) compileBinaries(ctx context.Context) error {
	var err error
	b.binaries, err = compile(ctx, &b.o, b.work)
	return err
}

// assembleImages makes one single-layer image per platform.
func (b *builder) assembleImages(ctx context.Context) error {
	for i, p := range b.o.Platforms {
		if err := ctx.Err(); err != nil {
			return err
		}
		img, err := b.platformImage(p, b.binaries[i])
		if err != nil {
			return fmt.Errorf("failed to assemble the %s image: %w", p, err)
		}
		b.images = append(b.images, img)
	}
	return nil
}

func (b *builder) platformImage(p Platform, binary string) (v1.Image, error) {
	tarFile := binary + ".layer.tar"
	if err := writeLayer(tarFile, rootFS(binary), b.o.Created); err != nil {
		return nil, err
	}
	// Compressed once and kept: the layout and the tarball both need it.
	// BestSpeed: Go binaries barely compress further (BestCompression made
	// the seven layers 48 MB instead of 49 MB, at several times the CPU).
	level := gzip.BestSpeed
	if b.o.StoreLayers {
		level = gzip.NoCompression
	}
	layer, err := tarball.LayerFromFile(tarFile, tarball.WithMediaType(types.OCILayer),
		tarball.WithCompressionLevel(level), tarball.WithCompressedCaching)
	if err != nil {
		return nil, fmt.Errorf("failed to read layer %s: %w", tarFile, err)
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.Append(img, mutate.Addendum{
		Layer: layer,
		History: v1.History{
			Created:   v1.Time{Time: b.o.Created},
			CreatedBy: "pqedge internal/image: " + BinaryPath + ", " + ConfigPath + ", /etc/passwd, /etc/group, " + DataDir,
		},
	})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant = p.OCI.OS, p.OCI.Architecture, p.OCI.Variant
	cf.Created = v1.Time{Time: b.o.Created}
	cf.Config = b.runConfig()
	return mutate.ConfigFile(img, cf)
}

// runConfig is how a runtime starts the container (OCI image-spec
// config.md "config"; Healthcheck is Docker's extension to it).
func (b *builder) runConfig() v1.Config {
	hc := HealthCheck
	hc.Test = append([]string(nil), HealthCheck.Test...)
	return v1.Config{
		Entrypoint:   []string{BinaryPath},
		Cmd:          []string{"run", "-config", ConfigPath},
		Env:          []string{"PATH=" + path.Dir(BinaryPath)},
		User:         fmt.Sprintf("%d:%d", UID, GID),
		WorkingDir:   DataDir,
		Volumes:      map[string]struct{}{DataDir: {}},
		ExposedPorts: map[string]struct{}{"8443/tcp": {}},
		StopSignal:   "SIGTERM",
		Healthcheck:  &hc,
		Labels:       b.labels(),
	}
}

// labels are the pre-defined annotation keys of the OCI image spec
// (annotations.md), as config labels and index annotations.
func (b *builder) labels() map[string]string {
	l := map[string]string{
		"org.opencontainers.image.title":       "pqedge",
		"org.opencontainers.image.description": "post-quantum TLS edge proxy (hybrid X25519+ML-KEM-768 key exchange, ML-DSA certificates)",
		"org.opencontainers.image.version":     b.o.Version,
		"org.opencontainers.image.created":     b.o.Created.Format(time.RFC3339),
	}
	if b.o.Revision != "" {
		l["org.opencontainers.image.revision"] = b.o.Revision
	}
	if b.o.SourceURL != "" {
		l["org.opencontainers.image.source"] = b.o.SourceURL
	}
	return l
}

// assembleIndex puts the platform images into one OCI image index.
func (b *builder) assembleIndex(ctx context.Context) error {
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for i, img := range b.images {
		p := b.o.Platforms[i].OCI
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &p}})
		d, err := img.Digest()
		if err != nil {
			return fmt.Errorf("failed to digest the %s image: %w", b.o.Platforms[i], err)
		}
		b.res.Images = append(b.res.Images, Built{Platform: b.o.Platforms[i], Digest: d})
	}
	b.index = mutate.Annotations(idx, b.labels()).(v1.ImageIndex)
	var err error
	if b.res.Index, err = b.index.Digest(); err != nil {
		return fmt.Errorf("failed to digest the image index: %w", err)
	}
	return nil
}

// writeLayout writes Out/oci, replacing an earlier layout there. The index
// is referenced from index.json under the version as its ref name
// (org.opencontainers.image.ref.name), so `skopeo copy --all oci:DIR:VERSION`
// finds it.
func (b *builder) writeLayout(ctx context.Context) error {
	dir := filepath.Join(b.o.Out, "oci")
	if err := removeLayout(dir); err != nil {
		return err
	}
	logf(b.o.Log, "writing %s", dir)
	lp, err := layout.Write(dir, empty.Index)
	if err != nil {
		return fmt.Errorf("failed to write OCI layout %s: %w", dir, err)
	}
	err = lp.AppendIndex(b.index, layout.WithAnnotations(map[string]string{
		"org.opencontainers.image.ref.name": b.o.Version,
	}))
	if err != nil {
		return fmt.Errorf("failed to write OCI layout %s: %w", dir, err)
	}
	b.res.Layout = dir
	return nil
}

// removeLayout deletes an earlier OCI layout at dir, and refuses to delete
// a directory that is not one.
func removeLayout(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("failed to read output directory: %w", err)
	}
	if len(entries) == 0 {
		return nil
	}
	if _, err := os.Stat(filepath.Join(dir, "oci-layout")); err != nil {
		return fmt.Errorf("output directory %s exists and is not an OCI layout: remove it or choose another output directory", dir)
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("failed to remove the previous OCI layout: %w", err)
	}
	return nil
}

// writeTarball writes Out/pqedge.tar, the Load platform's image in the
// format of `docker save` (manifest.json), which `docker load` reads. A
// docker tarball holds one image per tag, so it carries one platform; the
// OCI layout has them all.
func (b *builder) writeTarball(ctx context.Context) error {
	var img v1.Image
	for i, p := range b.o.Platforms {
		if p.String() == b.o.Load.String() {
			img = b.images[i]
		}
	}
	tag, err := name.NewTag(b.o.Repository + ":" + b.o.Version)
	if err != nil {
		return fmt.Errorf("failed to name the image: %w", err)
	}
	file := filepath.Join(b.o.Out, "pqedge.tar")
	logf(b.o.Log, "writing %s (%s, %s)", file, tag, b.o.Load)
	if err := tarball.WriteToFile(file, tag, img); err != nil {
		return fmt.Errorf("failed to write %s: %w", file, err)
	}
	b.res.Tarball, b.res.Tag = file, tag.String()
	return nil
}
