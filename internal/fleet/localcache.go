package fleet

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/caddyserver/certmagic"
)

// LocalCache returns a node-local certmagic storage in dir (created mode
// 0700) whose values are sealed like the store's, for
// certs/acme.Options.LocalCache. certmagic copies there every certificate,
// key and metadata file it loads or stores, and serves certificates from
// it first: a node that restarts while the store is down still serves its
// ACME certificates, and the copies on disk are as unreadable without the
// fleet key as the store's. It is only a cache: certmagic never locks in
// it, and renewals and issuance read the store.
func (f *Fleet) LocalCache(dir string) (certmagic.Storage, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("failed to create the fleet's local ACME cache %q: %w", dir, err)
	}
	return &sealedFiles{FileStorage: &certmagic.FileStorage{Path: dir}, key: f.opts.Key}, nil
}

// sealedFiles is certmagic's FileStorage with every value sealed under the
// fleet key (associated data "acme:" + key, as in the store).
type sealedFiles struct {
	*certmagic.FileStorage
	key *Key
}

var _ certmagic.Storage = (*sealedFiles)(nil)

func (s *sealedFiles) Store(ctx context.Context, key string, value []byte) error {
	sealed, err := s.key.Seal(acmeAD(key), value)
	if err != nil {
		return err
	}
	return s.FileStorage.Store(ctx, key, sealed)
}

func (s *sealedFiles) Load(ctx context.Context, key string) ([]byte, error) {
	sealed, err := s.FileStorage.Load(ctx, key)
	if err != nil {
		return nil, err
	}
	v, err := s.key.Open(acmeAD(key), sealed)
	if errors.Is(err, ErrWrongKey) || errors.Is(err, ErrCorrupt) {
		// certmagic falls back to the store on any error but "not
		// found", and logs it: a cache written under an older key is
		// simply refilled.
		return nil, fmt.Errorf("local ACME cache: %w", err)
	}
	return v, err
}

func (s *sealedFiles) String() string { return "fleet-local-cache:" + s.Path }
