package fleet

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// maxKeyFileSize caps what LoadKeyFile reads: a key file is two comment
// lines and 44 characters of base64.
const maxKeyFileSize = 4096

// keyFileHeader opens every key file WriteKeyFile makes.
const keyFileHeader = `# pqedge fleet encryption key (XChaCha20-Poly1305, 32 bytes, base64).
# Every node of the fleet needs this same file, mode 0600. Keep it secret:
# it opens every private key and ticket key the fleet keeps in its store.
`

// ParseKeyFile reads a key file's text: lines starting with # and blank
// lines are ignored, and exactly one line of standard base64 must decode
// to KeySize bytes.
func ParseKeyFile(data []byte) (*Key, error) {
	if len(data) > maxKeyFileSize {
		return nil, fmt.Errorf("key file is %d bytes, more than a key file's %d", len(data), maxKeyFileSize)
	}
	var encoded []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		encoded = append(encoded, text)
		if len(encoded) > 1 {
			return nil, fmt.Errorf("line %d: a key file holds one line of base64, found a second", line)
		}
	}
	if len(encoded) == 0 {
		return nil, errors.New("no key in the file (one line of base64 expected)")
	}
	raw, err := base64.StdEncoding.DecodeString(encoded[0])
	if err != nil {
		return nil, fmt.Errorf("the key is not valid base64: %v", err)
	}
	if len(raw) != KeySize {
		return nil, fmt.Errorf("the key is %d bytes, want %d", len(raw), KeySize)
	}
	return NewKey(raw)
}

// LoadKeyFile reads the key file at path. It refuses a file that is not
// a regular file, or that group or others may read or write (mode & 0077):
// the key opens every private key the fleet stores.
func LoadKeyFile(path string) (*Key, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("failed to read fleet key file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("failed to read fleet key file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("fleet key file %q is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("fleet key file %q has mode %04o: group or others may read it; run chmod 600 %q", path, perm, path)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("failed to read fleet key file: %w", err)
	}
	k, err := ParseKeyFile(data)
	if err != nil {
		return nil, fmt.Errorf("bad fleet key file %q: %w (make one with `pqedge fleet keygen -o FILE`)", path, err)
	}
	return k, nil
}

// ErrKeyFileExists is returned by WriteKeyFile when path exists and
// overwrite is false.
var ErrKeyFileExists = errors.New("key file already exists")

// WriteKeyFile writes a new random key to path with mode 0600 and returns
// it. Unless overwrite is set it refuses an existing path: replacing a
// fleet's key makes everything in its store unreadable. The file appears
// whole or not at all.
func WriteKeyFile(path string, overwrite bool) (*Key, error) {
	k, err := GenerateKey()
	if err != nil {
		return nil, err
	}
	if !overwrite {
		if _, err := os.Lstat(path); err == nil {
			return nil, fmt.Errorf("failed to write %q: %w", path, ErrKeyFileExists)
		}
	}
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, ".pqedge-fleet-key-*")
	if err != nil {
		return nil, fmt.Errorf("failed to write key file: %w", err)
	}
	defer os.Remove(tmp.Name()) // after a successful link or rename, a no-op or the spare name
	// CreateTemp makes the file 0600 already; say it, since the mode is
	// the point.
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("failed to write key file: %w", err)
	}
	text := keyFileHeader + base64.StdEncoding.EncodeToString(k.secret[:]) + "\n"
	if _, err := tmp.WriteString(text); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("failed to write key file: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("failed to write key file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("failed to write key file: %w", err)
	}
	if overwrite {
		err = os.Rename(tmp.Name(), path)
	} else {
		// A hard link fails if path appeared since the check above, so two
		// keygens racing cannot replace each other's key.
		err = os.Link(tmp.Name(), path)
		if errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("failed to write %q: %w", path, ErrKeyFileExists)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("failed to write key file: %w", err)
	}
	return k, nil
}
