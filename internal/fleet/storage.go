package fleet

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/redis/go-redis/v9"
)

// Storage is a certmagic.Storage over the fleet's store, so every node
// shares ACME accounts, certificates, keys and challenge data (certmagic's
// distributed solver keeps challenge tokens in storage, so any node answers
// the CA's validation request).
//
// # Layout
//
// Each value is sealed (Key.Seal, associated data "acme:" + key) and kept
// at PREFIX + "acme:" + key. A sorted set, PREFIX + "acme-index", holds
// every key, all with score 0 so that ZRANGEBYLEX finds the keys under a
// directory (lexicographic ranges are only defined among equal scores);
// a hash, PREFIX + "acme-modified", holds each key's modification time
// (Unix ms). List, Stat and Exists read them instead of scanning a
// keyspace other fleets may share, and Store and Delete change value,
// index and time in one transaction.
//
// # Contract
//
// As certmagic.Storage asks: Load, Stat and List return an error wrapping
// fs.ErrNotExist for a missing key; Delete of a missing key is not an
// error, and Delete of a "directory" deletes everything under it; every
// method honours ctx and is safe for concurrent use. A store error is
// returned as is (wrapped), never as fs.ErrNotExist: certmagic would read
// that as "no certificate yet" and start an issuance during an outage.
//
// Storage needs a single Redis or Valkey server (or a primary with
// replicas): Delete's script touches keys it computes, which Redis Cluster
// does not allow.
type Storage struct {
	f *Fleet
	// pollMin and pollMax bound Lock's polling of a taken lock
	// (lockPollMin, lockPollMax; tests shorten them).
	pollMin, pollMax time.Duration

	lockMu   sync.Mutex           // guards the fields below
	held     map[string]*heldLock // locks this node holds, by name
	closed   bool                 // set by close; Lock and TryLock fail after it
	waits    uint64               // Lock calls that found the lock taken
	waitTime time.Duration        // total time those calls waited
	waiting  int                  // Lock calls waiting now
	lost     uint64               // leases that ran out while held
	wg       sync.WaitGroup       // keepalive goroutines
}

var (
	_ certmagic.Storage          = (*Storage)(nil)
	_ certmagic.TryLocker        = (*Storage)(nil)
	_ certmagic.LockLeaseRenewer = (*Storage)(nil)
)

func newStorage(f *Fleet) *Storage {
	return &Storage{f: f, held: map[string]*heldLock{}, pollMin: lockPollMin, pollMax: lockPollMax}
}

// String names the store in certmagic's log lines.
func (s *Storage) String() string { return "fleet:" + s.f.opts.Store.String() }

// checkKey refuses keys certmagic never makes: empty, or with a leading
// or trailing slash (its keys are slash-separated paths without them).
func checkKey(key string) error {
	if key == "" || strings.HasPrefix(key, "/") || strings.HasSuffix(key, "/") {
		return fmt.Errorf("bad storage key %q: want a/b/c without leading or trailing slash", key)
	}
	return nil
}

// Store seals value and writes it at key, updating the index in the same
// transaction.
func (s *Storage) Store(ctx context.Context, key string, value []byte) error {
	if err := checkKey(key); err != nil {
		return err
	}
	sealed, err := s.f.opts.Key.Seal(acmeAD(key), value)
	if err != nil {
		return err
	}
	k := s.f.keys
	cmds, err := s.f.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, k.acmeValue(key), sealed, 0)
		p.ZAdd(ctx, k.acmeIndex(), redis.Z{Score: 0, Member: key})
		p.HSet(ctx, k.acmeModified(), key, time.Now().UnixMilli())
		return nil
	})
	if err = s.f.observe(firstError(err, cmds)); err != nil {
		return fmt.Errorf("failed to store %q in the fleet store: %w", key, err)
	}
	return nil
}

// Load reads and opens the value at key.
func (s *Storage) Load(ctx context.Context, key string) ([]byte, error) {
	if err := checkKey(key); err != nil {
		return nil, err
	}
	sealed, err := s.f.client.Get(ctx, s.f.keys.acmeValue(key)).Bytes()
	switch err = s.f.observe(err); {
	case errors.Is(err, redis.Nil):
		return nil, fmt.Errorf("%q is not in the fleet store: %w", key, fs.ErrNotExist)
	case err != nil:
		return nil, fmt.Errorf("failed to load %q from the fleet store: %w", key, err)
	}
	return s.f.opts.Key.Open(acmeAD(key), sealed)
}

// deleteScript deletes a key and every key under KEY/ with their index
// and time entries, atomically. KEYS are the index and the time hash,
// ARGV[1] the value-key prefix, ARGV[2] the key. '0' is the byte after
// '/', so [KEY/ to (KEY0 is exactly the keys under KEY/.
var deleteScript = redis.NewScript(`
local idx, mod, vp, k = KEYS[1], KEYS[2], ARGV[1], ARGV[2]
local n = redis.call("DEL", vp .. k)
redis.call("ZREM", idx, k)
redis.call("HDEL", mod, k)
local sub = redis.call("ZRANGEBYLEX", idx, "[" .. k .. "/", "(" .. k .. "0")
for _, m in ipairs(sub) do
	n = n + redis.call("DEL", vp .. m)
	redis.call("ZREM", idx, m)
	redis.call("HDEL", mod, m)
end
return n
`)

// Delete removes key and, if it is a directory, everything under it. A
// missing key is not an error.
func (s *Storage) Delete(ctx context.Context, key string) error {
	if err := checkKey(key); err != nil {
		return err
	}
	k := s.f.keys
	err := deleteScript.Run(ctx, s.f.client, []string{k.acmeIndex(), k.acmeModified()}, k.acmeValuePrefix(), key).Err()
	if err = s.f.observe(err); err != nil {
		return fmt.Errorf("failed to delete %q from the fleet store: %w", key, err)
	}
	return nil
}

// Exists reports whether key is a value or a directory. A store error
// reads as false, as certmagic's contract says ("and there was no error
// checking").
func (s *Storage) Exists(ctx context.Context, key string) bool {
	if checkKey(key) != nil {
		return false
	}
	_, err := s.f.client.ZScore(ctx, s.f.keys.acmeIndex(), key).Result()
	if s.f.observe(err) == nil {
		return true
	}
	children, err := s.children(ctx, key, 1)
	return err == nil && len(children) > 0
}

// Stat describes key: a value (with its modification time and plaintext
// size) or a directory.
func (s *Storage) Stat(ctx context.Context, key string) (certmagic.KeyInfo, error) {
	if err := checkKey(key); err != nil {
		return certmagic.KeyInfo{}, err
	}
	k := s.f.keys
	var modified *redis.StringCmd
	var size *redis.IntCmd
	_, err := s.f.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		modified = p.HGet(ctx, k.acmeModified(), key)
		size = p.StrLen(ctx, k.acmeValue(key))
		return nil
	})
	if err := s.f.observe(err); err != nil && !errors.Is(err, redis.Nil) {
		return certmagic.KeyInfo{}, fmt.Errorf("failed to stat %q in the fleet store: %w", key, err)
	}
	if ms, err := modified.Int64(); err == nil && size.Val() > 0 {
		return certmagic.KeyInfo{
			Key:        key,
			Modified:   time.UnixMilli(int64(ms)),
			Size:       max(size.Val()-Overhead, 0),
			IsTerminal: true,
		}, nil
	}
	children, err := s.children(ctx, key, 1)
	if err != nil {
		return certmagic.KeyInfo{}, fmt.Errorf("failed to stat %q in the fleet store: %w", key, err)
	}
	if len(children) == 0 {
		return certmagic.KeyInfo{}, fmt.Errorf("%q is not in the fleet store: %w", key, fs.ErrNotExist)
	}
	return certmagic.KeyInfo{Key: key}, nil
}

// List returns the keys under dir ("" is the root): its direct children
// (values and directories), or with recursive every value and directory
// below it, sorted. An empty or missing dir is fs.ErrNotExist.
func (s *Storage) List(ctx context.Context, dir string, recursive bool) ([]string, error) {
	if dir != "" {
		if err := checkKey(dir); err != nil {
			return nil, err
		}
	}
	members, err := s.children(ctx, dir, 0)
	if err != nil {
		return nil, fmt.Errorf("failed to list %q in the fleet store: %w", dir, err)
	}
	if len(members) == 0 {
		return nil, fmt.Errorf("%q is not in the fleet store: %w", dir, fs.ErrNotExist)
	}
	base := ""
	if dir != "" {
		base = dir + "/"
	}
	seen := map[string]bool{}
	var out []string
	add := func(k string) {
		if !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	for _, m := range members {
		rest := strings.TrimPrefix(m, base)
		parts := strings.Split(rest, "/")
		if !recursive {
			add(base + parts[0])
			continue
		}
		for i := range parts {
			add(base + strings.Join(parts[:i+1], "/"))
		}
	}
	slices.Sort(out)
	return out, nil
}

// children returns up to limit (0: all) index entries under dir/ (every
// entry for dir "").
func (s *Storage) children(ctx context.Context, dir string, limit int64) ([]string, error) {
	by := &redis.ZRangeBy{Min: "-", Max: "+", Count: limit}
	if dir != "" {
		by.Min, by.Max = "["+dir+"/", "("+dir+"0"
	}
	out, err := s.f.client.ZRangeByLex(ctx, s.f.keys.acmeIndex(), by).Result()
	return out, s.f.observe(err)
}

// firstError returns the error of the first command of a transaction that
// failed, rather than EXECABORT: "NOPERM ... no permissions to access the
// 'pqedge:acme:...' key" tells an operator which ACL rule is missing.
func firstError(err error, cmds []redis.Cmder) error {
	if err == nil {
		return nil
	}
	for _, c := range cmds {
		if e := c.Err(); e != nil && !strings.HasPrefix(e.Error(), "EXECABORT") {
			return e
		}
	}
	return err
}
