package fleet

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

// The ticket-key cache is the store's sealed value, byte for byte, in
// CacheDir/tickets.sealed: opening it needs the fleet key, like the store.

func cacheFile(dir string) string { return filepath.Join(dir, "tickets.sealed") }

// writeCache replaces the cache file atomically, mode 0600 in a 0700
// directory.
func writeCache(path string, sealed []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("failed to create %q: %w", dir, err)
	}
	tmp, err := os.CreateTemp(dir, ".tickets-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(sealed); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// readCache reads the cache file (at most MaxValueSize) and its mtime.
func readCache(path string) ([]byte, time.Time, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, time.Time{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, time.Time{}, err
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxValueSize+1))
	if err != nil {
		return nil, time.Time{}, err
	}
	return data, fi.ModTime(), nil
}
