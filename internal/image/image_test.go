package image

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/buildinfo"
	"debug/elf"
	"encoding/binary"
	"errors"
	"io"
	"maps"
	"os"
	"runtime/debug"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/pqedge/pqedge/internal/config"
)

// created is the image's fixed timestamp in these tests.
var created = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// TestImage builds the whole image once (every platform: a cold build cache
// makes this the slowest test in the tree, see docs/OPERATIONS.md) and
// checks what a user of each artifact would: the OCI layout's index, each
// platform's files and binary, the docker tarball, and, as root, the
// binary running from the unpacked layer (run_linux_test.go).
func TestImage(t *testing.T) {
	out := t.TempDir()
	start := time.Now()
	// A cold build cache compiles the standard library and every dependency
	// seven times (about 12 CPU-minutes): stop in time to say so instead of
	// dying in the test binary's timeout.
	ctx := context.Background()
	if deadline, ok := t.Deadline(); ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, deadline.Add(-time.Minute))
		defer cancel()
	}
	res, err := Build(ctx, Options{
		Source: "../..", Out: out, Version: "test", Revision: "0123abc",
		SourceURL: "https://example.test/pqedge", Created: created,
		StoreLayers: raceDetector,
	})
	if ctx.Err() != nil {
		t.Fatalf("the image was not built %s after the start, a minute before the test's deadline: with a cold Go build cache, run `make image` first (make test does) or raise -timeout: %v",
			time.Since(start).Round(time.Second), err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("built %d platforms in %s", len(res.Images), time.Since(start).Round(time.Millisecond))
	entries, _ := os.ReadDir(out)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if !slices.Equal(names, []string{"oci", "pqedge.tar"}) {
		t.Errorf("output directory holds %v, want [oci pqedge.tar] (the work directory removed)", names)
	}

	idx := checkLayout(t, res)
	for i, p := range Platforms {
		t.Run(strings.ReplaceAll(p.String(), "/", "-"), func(t *testing.T) {
			img, err := idx.Image(res.Images[i].Digest)
			if err != nil {
				t.Fatal(err)
			}
			checkConfig(t, img, p)
			files := readLayer(t, img)
			checkFiles(t, files)
			checkBinary(t, p, files[BinaryPath].body)
		})
	}
	t.Run("docker tarball", func(t *testing.T) { checkTarball(t, res) })
	t.Run("run", func(t *testing.T) { runFromLayer(t, res, idx) })
}

// checkLayout reads the OCI layout as a registry client would and returns
// the multi-arch index.
func checkLayout(t *testing.T, res *Result) v1.ImageIndex {
	t.Helper()
	lp, err := layout.FromPath(res.Layout)
	if err != nil {
		t.Fatal(err)
	}
	top, err := lp.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	im, err := top.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 1 || im.Manifests[0].Digest != res.Index ||
		im.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != "test" {
		t.Fatalf("index.json lists %+v, want only the image index %s named \"test\"", im.Manifests, res.Index)
	}
	idx, err := top.ImageIndex(res.Index)
	if err != nil {
		t.Fatal(err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if m.MediaType != types.OCIImageIndex {
		t.Errorf("index media type %s, want %s", m.MediaType, types.OCIImageIndex)
	}
	var got, want []string
	for i, d := range m.Manifests {
		got = append(got, d.Platform.String())
		want = append(want, Platforms[i].String())
		if d.MediaType != types.OCIManifestSchema1 || d.Digest != res.Images[i].Digest {
			t.Errorf("index entry %d: %s %s, want an OCI manifest %s", i, d.MediaType, d.Digest, res.Images[i].Digest)
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("index platforms %v, want %v", got, want)
	}
	if m.Annotations["org.opencontainers.image.version"] != "test" || m.Annotations["org.opencontainers.image.revision"] != "0123abc" {
		t.Errorf("index annotations %v", m.Annotations)
	}
	return idx
}

func checkConfig(t *testing.T, img v1.Image, p Platform) {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if got := cf.Platform().String(); got != p.String() {
		t.Errorf("config platform %s, want %s", got, p)
	}
	c := cf.Config
	checks := []struct {
		what      string
		got, want any
	}{
		{"created", cf.Created.Time, created},
		{"user", c.User, "65532:65532"},
		{"entrypoint", c.Entrypoint, []string{"/usr/local/bin/pqedge"}},
		{"cmd", c.Cmd, []string{"run", "-config", "/etc/pqedge/pqedge.toml"}},
		{"volumes", slices.Collect(maps.Keys(c.Volumes)), []string{"/var/lib/pqedge"}},
		{"healthcheck", c.Healthcheck.Test[:5], []string{"CMD", "/usr/local/bin/pqedge", "health", "-config", "/etc/pqedge/pqedge.toml"}},
		{"stop signal", c.StopSignal, "SIGTERM"},
		{"title label", c.Labels["org.opencontainers.image.title"], "pqedge"},
		{"version label", c.Labels["org.opencontainers.image.version"], "test"},
		{"created label", c.Labels["org.opencontainers.image.created"], "2026-01-02T03:04:05Z"},
		{"revision label", c.Labels["org.opencontainers.image.revision"], "0123abc"},
		{"source label", c.Labels["org.opencontainers.image.source"], "https://example.test/pqedge"},
	}
	for _, ck := range checks {
		if !equal(ck.got, ck.want) {
			t.Errorf("%s = %v, want %v", ck.what, ck.got, ck.want)
		}
	}
	if c.Healthcheck.Timeout <= 4*time.Second {
		t.Errorf("HEALTHCHECK timeout %s is not above the command's own -timeout 4s", c.Healthcheck.Timeout)
	}
}

func equal(a, b any) bool {
	if as, ok := a.([]string); ok {
		bs, ok := b.([]string)
		return ok && slices.Equal(as, bs)
	}
	if at, ok := a.(time.Time); ok {
		bt, ok := b.(time.Time)
		return ok && at.Equal(bt)
	}
	return a == b
}

// layerFile is one entry of a layer.
type layerFile struct {
	hdr  *tar.Header
	body []byte
}

// readLayer returns the files of img's only layer by absolute path.
func readLayer(t *testing.T, img v1.Image) map[string]layerFile {
	t.Helper()
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("image has %d layers (%v), want 1", len(layers), err)
	}
	if mt, _ := layers[0].MediaType(); mt != types.OCILayer {
		t.Errorf("layer media type %s, want %s", mt, types.OCILayer)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	files := map[string]layerFile{}
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if !hdr.ModTime.Equal(created) {
			t.Errorf("%s has mtime %s, want %s", hdr.Name, hdr.ModTime, created)
		}
		files["/"+strings.TrimSuffix(hdr.Name, "/")] = layerFile{hdr, body}
	}
	return files
}

// checkFiles: the user, the data volume, the default config where the docs
// say, and nothing a scratch image should not have.
func checkFiles(t *testing.T, files map[string]layerFile) {
	t.Helper()
	want := []struct {
		path     string
		mode     int64
		uid, gid int
		dir      bool
	}{
		{"/etc/passwd", 0o644, 0, 0, false},
		{"/etc/group", 0o644, 0, 0, false},
		{"/etc/pqedge/pqedge.toml", 0o644, 0, 0, false},
		{"/usr/local/bin/pqedge", 0o755, 0, 0, false},
		{"/var/lib/pqedge", 0o700, 65532, 65532, true},
		{"/tmp", 0o1777, 0, 0, true},
	}
	for _, w := range want {
		f, ok := files[w.path]
		if !ok {
			t.Errorf("%s missing", w.path)
			continue
		}
		if f.hdr.Mode != w.mode || f.hdr.Uid != w.uid || f.hdr.Gid != w.gid || (f.hdr.Typeflag == tar.TypeDir) != w.dir {
			t.Errorf("%s: mode %o uid %d gid %d type %c, want %o %d %d dir=%v", w.path, f.hdr.Mode, f.hdr.Uid, f.hdr.Gid, f.hdr.Typeflag, w.mode, w.uid, w.gid, w.dir)
		}
	}
	paths := slices.Sorted(maps.Keys(files))
	if want := []string{"/etc", "/etc/group", "/etc/passwd", "/etc/pqedge", "/etc/pqedge/pqedge.toml", "/tmp", "/usr", "/usr/local", "/usr/local/bin", "/usr/local/bin/pqedge", "/var", "/var/lib", "/var/lib/pqedge"}; !slices.Equal(paths, want) {
		t.Errorf("layer holds %v, want %v", paths, want)
	}
	if !bytes.Contains(files["/etc/passwd"].body, []byte("\npqedge:x:65532:65532:pqedge:/var/lib/pqedge:")) {
		t.Errorf("/etc/passwd has no pqedge user:\n%s", files["/etc/passwd"].body)
	}
	if !bytes.Contains(files["/etc/group"].body, []byte("\npqedge:x:65532:\n")) {
		t.Errorf("/etc/group has no pqedge group:\n%s", files["/etc/group"].body)
	}
	cfg, err := config.Parse("/etc/pqedge/pqedge.toml", files["/etc/pqedge/pqedge.toml"].body)
	if err != nil {
		t.Fatalf("the image's config is invalid: %v", err)
	}
	if cfg.DataDir != "/var/lib/pqedge" || cfg.Admin.Listen == "" {
		t.Errorf("the image's config keeps data in %q and serves /readyz on %q", cfg.DataDir, cfg.Admin.Listen)
	}
}

// elfWant is what each platform's binary must be (ELF header fields).
var elfWant = map[string]struct {
	machine elf.Machine
	class   elf.Class
	order   binary.ByteOrder
}{
	"linux/amd64":   {elf.EM_X86_64, elf.ELFCLASS64, binary.LittleEndian},
	"linux/arm64":   {elf.EM_AARCH64, elf.ELFCLASS64, binary.LittleEndian},
	"linux/arm/v7":  {elf.EM_ARM, elf.ELFCLASS32, binary.LittleEndian},
	"linux/386":     {elf.EM_386, elf.ELFCLASS32, binary.LittleEndian},
	"linux/ppc64le": {elf.EM_PPC64, elf.ELFCLASS64, binary.LittleEndian},
	"linux/s390x":   {elf.EM_S390, elf.ELFCLASS64, binary.BigEndian},
	"linux/riscv64": {elf.EM_RISCV, elf.ELFCLASS64, binary.LittleEndian},
}

// checkBinary: a static ELF for the platform's machine (no interpreter, no
// shared libraries), built without cgo, trimmed, with the CA roots.
func checkBinary(t *testing.T, p Platform, bin []byte) {
	t.Helper()
	f, err := elf.NewFile(bytes.NewReader(bin))
	if err != nil {
		t.Fatalf("the binary is not ELF: %v", err)
	}
	w, ok := elfWant[p.String()]
	if !ok {
		t.Fatalf("no ELF expectation for %s", p)
	}
	if f.Machine != w.machine || f.Class != w.class || f.ByteOrder != w.order || f.OSABI != elf.ELFOSABI_NONE && f.OSABI != elf.ELFOSABI_LINUX {
		t.Errorf("ELF %s %s %s %s, want %s %s %s", f.Machine, f.Class, f.ByteOrder, f.OSABI, w.machine, w.class, w.order)
	}
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			t.Error("the binary has a PT_INTERP: it is dynamically linked")
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("the binary needs shared libraries %v", libs)
	}

	bi, err := buildinfo.Read(bytes.NewReader(bin))
	if err != nil {
		t.Fatalf("no Go build information: %v", err)
	}
	settings := map[string]string{}
	for _, s := range bi.Settings {
		settings[s.Key] = s.Value
	}
	wantSettings := map[string]string{"CGO_ENABLED": "0", "-trimpath": "true", "GOOS": "linux", "GOARCH": p.GOARCH}
	if p.GOARM != "" {
		wantSettings["GOARM"] = p.GOARM
	}
	for k, v := range wantSettings {
		if settings[k] != v {
			t.Errorf("build setting %s=%q, want %q", k, settings[k], v)
		}
	}
	if !slices.ContainsFunc(bi.Deps, func(m *debug.Module) bool { return m.Path == "golang.org/x/crypto/x509roots/fallback" }) {
		t.Error("the binary does not embed the CA roots (golang.org/x/crypto/x509roots/fallback)")
	}
}

// checkTarball: pqedge.tar is what `docker load` reads: manifest.json with
// the tag, and the host platform's config and layer.
func checkTarball(t *testing.T, res *Result) {
	opener := func() (io.ReadCloser, error) { return os.Open(res.Tarball) }
	m, err := tarball.LoadManifest(opener)
	if err != nil {
		t.Fatal(err)
	}
	if len(m) != 1 || !slices.Equal(m[0].RepoTags, []string{"pqedge:test"}) {
		t.Fatalf("manifest.json %+v, want one image tagged pqedge:test", m)
	}
	tag, _ := name.NewTag("pqedge:test")
	img, err := tarball.Image(opener, &tag)
	if err != nil {
		t.Fatal(err)
	}
	host, ok := HostPlatform()
	if !ok {
		t.Skip("this machine's architecture is not an image platform")
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.Platform().String() != host.String() || cf.Config.Healthcheck == nil {
		t.Errorf("the tarball's image is %s (healthcheck %v), want %s with one", cf.Platform(), cf.Config.Healthcheck, host)
	}
}
