package image

import (
	"archive/tar"
	"bytes"
	_ "embed"
	"fmt"
	"io"
	"os"
	"path"
	"strconv"
	"time"
)

// Paths and identities inside the image. docs/OPERATIONS.md quotes them;
// the image test checks them.
const (
	BinaryPath = "/usr/local/bin/pqedge"
	ConfigPath = "/etc/pqedge/pqedge.toml"
	DataDir    = "/var/lib/pqedge"
	UserName   = "pqedge"
	// UID and GID are those of distroless's "nonroot" user: high enough
	// never to collide with a host account a volume is shared with, and
	// below 65534 (nobody).
	UID = 65532
	GID = 65532
)

// DefaultConfig is the config the image ships at ConfigPath: the inspect
// page over https on port 8443 with a local development CA in DataDir, and
// the admin listener on loopback for the HEALTHCHECK.
//
//go:embed pqedge.toml
var DefaultConfig []byte

// fsEntry is one file or directory of the layer.
type fsEntry struct {
	name     string      // absolute path in the image
	mode     os.FileMode // permission bits, plus os.ModeDir or os.ModeSticky
	uid, gid int
	body     []byte // a file's content, unless src is set
	src      string // a file on the build host to copy (the binary)
}

// rootFS is the image's file system for the binary at binary, parents
// before children (tar readers create directories in that order).
func rootFS(binary string) []fsEntry {
	root := func(name string, mode os.FileMode, body []byte) fsEntry {
		return fsEntry{name: name, mode: mode, body: body}
	}
	passwd := fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\n%s:x:%d:%d:%s:%s:/sbin/nologin\n", UserName, UID, GID, UserName, DataDir)
	group := fmt.Sprintf("root:x:0:\n%s:x:%d:\n", UserName, GID)
	return []fsEntry{
		root("/etc", os.ModeDir|0o755, nil),
		root("/etc/group", 0o644, []byte(group)),
		root("/etc/passwd", 0o644, []byte(passwd)),
		root(path.Dir(ConfigPath), os.ModeDir|0o755, nil),
		root(ConfigPath, 0o644, DefaultConfig),
		root("/tmp", os.ModeDir|os.ModeSticky|0o777, nil),
		root("/usr", os.ModeDir|0o755, nil),
		root("/usr/local", os.ModeDir|0o755, nil),
		root(path.Dir(BinaryPath), os.ModeDir|0o755, nil),
		{name: BinaryPath, mode: 0o755, src: binary},
		root("/var", os.ModeDir|0o755, nil),
		root("/var/lib", os.ModeDir|0o755, nil),
		// 0700: the local CA's and ACME account's keys live here.
		{name: DataDir, mode: os.ModeDir | 0o700, uid: UID, gid: GID},
	}
}

// writeLayer writes entries as an uncompressed tar to file, every
// timestamp set to mtime.
func writeLayer(file string, entries []fsEntry, mtime time.Time) (err error) {
	f, err := os.Create(file)
	if err != nil {
		return fmt.Errorf("failed to create layer: %w", err)
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("failed to write layer %s: %w", file, cerr)
		}
	}()
	tw := tar.NewWriter(f)
	for _, e := range entries {
		if err := writeEntry(tw, e, mtime); err != nil {
			return fmt.Errorf("failed to write %s into layer %s: %w", e.name, file, err)
		}
	}
	return tw.Close()
}

func writeEntry(tw *tar.Writer, e fsEntry, mtime time.Time) error {
	hdr := &tar.Header{
		// Layer paths are relative to the root (OCI image-layer spec,
		// "Changeset over existing files"); directories end in a slash.
		Name:    e.name[1:],
		Mode:    int64(e.mode.Perm()),
		Uid:     e.uid,
		Gid:     e.gid,
		Uname:   nameOf(e.uid),
		Gname:   nameOf(e.gid),
		ModTime: mtime,
		Format:  tar.FormatPAX,
	}
	if e.mode&os.ModeSticky != 0 {
		hdr.Mode |= 0o1000
	}
	body := io.Reader(nil)
	switch {
	case e.mode.IsDir():
		hdr.Typeflag = tar.TypeDir
		hdr.Name += "/"
	case e.src != "":
		f, err := os.Open(e.src)
		if err != nil {
			return err
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			return err
		}
		hdr.Typeflag, hdr.Size, body = tar.TypeReg, fi.Size(), f
	default:
		hdr.Typeflag, hdr.Size, body = tar.TypeReg, int64(len(e.body)), bytes.NewReader(e.body)
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	if body == nil {
		return nil
	}
	n, err := io.Copy(tw, body)
	if err == nil && n != hdr.Size {
		err = fmt.Errorf("copied %d bytes of %d: the file changed while being copied", n, hdr.Size)
	}
	return err
}

func nameOf(id int) string {
	switch id {
	case 0:
		return "root"
	case UID:
		return UserName
	}
	return strconv.Itoa(id)
}
