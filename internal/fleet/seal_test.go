package fleet

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/tickets.sealed")

func TestSealOpen(t *testing.T) {
	k := testKey(t)
	other, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := k.Seal("acme:a/b.key", []byte("-----BEGIN EC PRIVATE KEY-----"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, []byte("PRIVATE KEY")) {
		t.Fatal("sealed value holds the plaintext")
	}
	flip := func(i int) []byte { b := bytes.Clone(sealed); b[i] ^= 1; return b }
	tests := []struct {
		name    string
		key     *Key
		ad      string
		value   []byte
		wantErr error
		wantMsg string
	}{
		{name: "round trip", key: k, ad: "acme:a/b.key", value: sealed},
		{name: "moved to another key", key: k, ad: "acme:a/c.key", value: sealed, wantErr: ErrCorrupt, wantMsg: "copied from another key"},
		{name: "other fleet key", key: other, ad: "acme:a/b.key", value: sealed, wantErr: ErrWrongKey, wantMsg: "same encryption_key_file"},
		{name: "flipped ciphertext", key: k, ad: "acme:a/b.key", value: flip(len(sealed) - 20), wantErr: ErrCorrupt},
		{name: "flipped tag", key: k, ad: "acme:a/b.key", value: flip(len(sealed) - 1), wantErr: ErrCorrupt},
		{name: "flipped nonce", key: k, ad: "acme:a/b.key", value: flip(headerLen + 3), wantErr: ErrCorrupt},
		{name: "truncated", key: k, ad: "acme:a/b.key", value: sealed[:Overhead-1], wantErr: ErrCorrupt, wantMsg: "shorter than"},
		{name: "empty", key: k, ad: "acme:a/b.key", value: nil, wantErr: ErrCorrupt},
		{name: "unknown version", key: k, ad: "acme:a/b.key", value: append([]byte{2}, sealed[1:]...), wantErr: ErrCorrupt, wantMsg: "unknown version 2"},
		{name: "plaintext", key: k, ad: "acme:a/b.key", value: []byte("-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIB..."), wantErr: ErrCorrupt},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.key.Open(tt.ad, tt.value)
			if tt.wantErr == nil {
				if err != nil || string(got) != "-----BEGIN EC PRIVATE KEY-----" {
					t.Fatalf("Open = %q, %v", got, err)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Open error = %v, want %v", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.ad) || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("error %q does not name the key %q and say %q", err, tt.ad, tt.wantMsg)
			}
		})
	}
}

func TestSealRefusesHugeValues(t *testing.T) {
	if _, err := testKey(t).Seal("k", make([]byte, MaxValueSize)); err == nil {
		t.Fatal("sealed a value over the limit")
	}
}

// TestSealedGolden opens a state sealed by an earlier build, so a change
// of the sealed format or the state's JSON that would strand a fleet's
// stored values fails here. -update rewrites it.
func TestSealedGolden(t *testing.T) {
	path := filepath.Join("testdata", "tickets.sealed")
	if *update {
		st, err := testRotation(1).plan(nil, testEpoch)
		if err != nil {
			t.Fatal(err)
		}
		plain, _ := st.encode()
		sealed, err := testKey(t).Seal(ticketsAD, plain)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, sealed, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	sealed, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := testKey(t).Open(ticketsAD, sealed)
	if err != nil {
		t.Fatal(err)
	}
	st, err := decodeTicketState(plain)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Keys) != 2 || st.Generation != 1 || !st.Keys[0].EncryptFrom.Equal(testEpoch) {
		t.Errorf("golden state = %+v", st)
	}
}

func TestParseKeyFile(t *testing.T) {
	good := keyFileHeader + "QkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkI=\n"
	tests := []struct {
		name, text, wantErr string
	}{
		{name: "as written", text: good},
		{name: "bare line, CRLF", text: "QkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkI=\r\n"},
		{name: "empty", text: "", wantErr: "no key in the file"},
		{name: "comments only", text: "# nothing\n\n", wantErr: "no key in the file"},
		{name: "two lines", text: good + "QkJC\n", wantErr: "found a second"},
		{name: "not base64", text: "not*base64\n", wantErr: "not valid base64"},
		{name: "31 bytes", text: "QkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQg==\n", wantErr: "is 31 bytes, want 32"},
		{name: "33 bytes", text: "QkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJC\n", wantErr: "is 33 bytes, want 32"},
		{name: "huge", text: strings.Repeat("#", maxKeyFileSize+1), wantErr: "more than a key file's"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := ParseKeyFile([]byte(tt.text))
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if k.Fingerprint() != testKey(t).Fingerprint() {
					t.Errorf("parsed another key")
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestKeyFileLifecycle(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "fleet.key")
	k, err := WriteKeyFile(path, false)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %04o, want 0600", fi.Mode().Perm())
	}
	loaded, err := LoadKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if loaded.Fingerprint() != k.Fingerprint() {
		t.Fatal("loaded another key than was written")
	}
	if _, err := WriteKeyFile(path, false); !errors.Is(err, ErrKeyFileExists) {
		t.Fatalf("second write without overwrite: %v, want ErrKeyFileExists", err)
	}
	if again, _ := LoadKeyFile(path); again.Fingerprint() != k.Fingerprint() {
		t.Fatal("a refused write changed the key file")
	}
	k2, err := WriteKeyFile(path, true)
	if err != nil {
		t.Fatal(err)
	}
	if k2.Fingerprint() == k.Fingerprint() {
		t.Fatal("overwrite kept the old key")
	}
	if leftovers, _ := filepath.Glob(filepath.Join(dir, ".pqedge-fleet-key-*")); len(leftovers) > 0 {
		t.Errorf("temporary files left behind: %v", leftovers)
	}

	if err := os.Chmod(path, 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadKeyFile(path); err == nil || !strings.Contains(err.Error(), "mode 0640") || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("group-readable key file: %v", err)
	}
	if _, err := LoadKeyFile(filepath.Join(dir, "missing.key")); err == nil || !strings.Contains(err.Error(), "failed to read fleet key file") {
		t.Errorf("missing key file: %v", err)
	}
	if _, err := LoadKeyFile(dir); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("directory as key file: %v", err)
	}
	short := filepath.Join(dir, "short.key")
	os.WriteFile(short, []byte("QkJC\n"), 0o600)
	if _, err := LoadKeyFile(short); err == nil || !strings.Contains(err.Error(), "is 3 bytes, want 32") || !strings.Contains(err.Error(), "pqedge fleet keygen") {
		t.Errorf("short key file: %v", err)
	}
}

// FuzzOpen: no input makes Open panic or return plaintext for a value it
// did not seal.
func FuzzOpen(f *testing.F) {
	k := testKey(f)
	golden, err := os.ReadFile(filepath.Join("testdata", "tickets.sealed"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(golden, ticketsAD)
	s, _ := k.Seal("acme:x", []byte("hello"))
	f.Add(s, "acme:x")
	f.Add([]byte{1}, "")
	f.Fuzz(func(t *testing.T, sealed []byte, ad string) {
		plain, err := k.Open(ad, sealed)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrWrongKey) {
				t.Fatalf("unclassified error %v", err)
			}
			return
		}
		// It opened: it must be a value sealed under this key for ad,
		// i.e. the golden or seeded one.
		again, err := k.Seal(ad, plain)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := k.Open(ad, again); err != nil {
			t.Fatal(err)
		}
	})
}

func FuzzParseKeyFile(f *testing.F) {
	f.Add([]byte(keyFileHeader + "QkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkI=\n"))
	f.Add([]byte("QkJC\n"))
	f.Add([]byte("\n#\n\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		k, err := ParseKeyFile(data)
		if err == nil && k == nil {
			t.Fatal("nil key without error")
		}
	})
}
