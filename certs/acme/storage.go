package acme

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"
)

// errStorageClosed is what storage returns once its Manager is closed. It is
// deliberately not fs.ErrNotExist: certmagic reads that as "no certificate
// yet" and would start an issuance.
var errStorageClosed = errors.New("acme manager is closed")

// closableStorage is the Manager's storage (certmagic's FileStorage, or the
// Storage of Options, such as a fleet's shared store) behind a gate that
// Close shuts.
// certmagic runs renewals on a process-wide job queue that outlives a Cache,
// so without the gate a renewal already under way when its Manager closes
// could still write keys and certificates, racing the Manager that replaces
// it (a config reload) or a test removing the directory. Close waits for
// calls in progress; later calls fail, except Unlock, so locks held by a
// job being cut short are still released.
type closableStorage struct {
	fs storage

	mu     sync.RWMutex // held shared for each call, exclusively by close
	closed bool         // guarded by mu
}

// storage is what the Manager needs of its storage: certmagic's Storage
// and TryLocker (certmagic serialises ACME Renewal Information updates
// with TryLock).
type storage interface {
	certmagic.Storage
	certmagic.TryLocker
}

var (
	_ certmagic.Storage          = (*closableStorage)(nil)
	_ certmagic.TryLocker        = (*closableStorage)(nil)
	_ certmagic.LockLeaseRenewer = (*closableStorage)(nil)
)

func (s *closableStorage) begin() error {
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return errStorageClosed
	}
	return nil
}

func (s *closableStorage) end() { s.mu.RUnlock() }

// close waits for calls in progress, including a Lock waiting for another
// process's lock, which gives up when its context ends.
func (s *closableStorage) close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
}

func (s *closableStorage) Lock(ctx context.Context, name string) error {
	if err := s.begin(); err != nil {
		return err
	}
	defer s.end()
	return s.fs.Lock(ctx, name)
}

func (s *closableStorage) TryLock(ctx context.Context, name string) (bool, error) {
	if err := s.begin(); err != nil {
		return false, err
	}
	defer s.end()
	return s.fs.TryLock(ctx, name)
}

func (s *closableStorage) Unlock(ctx context.Context, name string) error {
	return s.fs.Unlock(ctx, name)
}

// RenewLockLease extends a lock's lease if the storage has leases (a
// fleet's store); certmagic calls it before each retry of a long order.
// FileStorage has none: its lock files stay fresh by their own timer.
func (s *closableStorage) RenewLockLease(ctx context.Context, name string, d time.Duration) error {
	r, ok := s.fs.(certmagic.LockLeaseRenewer)
	if !ok {
		return nil
	}
	if err := s.begin(); err != nil {
		return err
	}
	defer s.end()
	return r.RenewLockLease(ctx, name, d)
}

func (s *closableStorage) Store(ctx context.Context, key string, value []byte) error {
	if err := s.begin(); err != nil {
		return err
	}
	defer s.end()
	return s.fs.Store(ctx, key, value)
}

func (s *closableStorage) Load(ctx context.Context, key string) ([]byte, error) {
	if err := s.begin(); err != nil {
		return nil, err
	}
	defer s.end()
	return s.fs.Load(ctx, key)
}

func (s *closableStorage) Delete(ctx context.Context, key string) error {
	if err := s.begin(); err != nil {
		return err
	}
	defer s.end()
	return s.fs.Delete(ctx, key)
}

func (s *closableStorage) Exists(ctx context.Context, key string) bool {
	if s.begin() != nil {
		return false
	}
	defer s.end()
	return s.fs.Exists(ctx, key)
}

func (s *closableStorage) List(ctx context.Context, path string, recursive bool) ([]string, error) {
	if err := s.begin(); err != nil {
		return nil, err
	}
	defer s.end()
	return s.fs.List(ctx, path, recursive)
}

func (s *closableStorage) Stat(ctx context.Context, key string) (certmagic.KeyInfo, error) {
	if err := s.begin(); err != nil {
		return certmagic.KeyInfo{}, err
	}
	defer s.end()
	return s.fs.Stat(ctx, key)
}

// String keeps certmagic's log lines naming the directory or store.
func (s *closableStorage) String() string { return fmt.Sprint(s.fs) }
