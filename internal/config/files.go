package config

import (
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/pqedge/pqedge/certs"
)

// CheckFiles reads every file cfg names and returns what is wrong with
// them, each Problem at the line of the key that names the file: the
// [[site.cert]] pairs and pq_root of sites with certs = "files" or "acme"
// (through certs.LoadFiles, the loader the server serves them with: they
// exist, parse, belong together, are valid at now and cover the site's
// server_names), acme.ca_roots (PEM certificates), the [fleet] key,
// password and CA files (checkFleetFiles), and each pool's origin TLS files
// (tls_ca, tls_client_cert and tls_client_key, through PoolTLS, the loader
// the server builds pools with). Problems with Warning set (a chain out of
// order, a leaf about to expire) leave the files usable.
//
// Unlike Load, it does I/O: `pqedge config check` and `pqedge run` call it
// before serving. cfg must come from Load or Parse.
func CheckFiles(cfg *Config, now time.Time) Problems {
	var ps Problems
	add := func(key string, err error, warning bool) {
		p := Problem{File: cfg.File, Line: cfg.pos.line(key), Key: key, Msg: err.Error(), Warning: warning}
		if errors.Is(err, fs.ErrNotExist) {
			p.Hint = "relative paths are relative to the config file's directory"
			if key == "fleet.encryption_key_file" {
				// A new fleet's first node has no key yet: say how to make one.
				p.Hint = "make the fleet's key once with `pqedge fleet keygen -o " + cfg.Fleet.EncryptionKeyFile +
					"` and give every node the same file; " + p.Hint
			}
		}
		ps = append(ps, p)
	}
	checkFleetFiles(cfg.Fleet, add)
	for i, s := range cfg.Site {
		key := fmt.Sprintf("site.%d", i)
		if s.ACME.CARoots != "" {
			if _, err := certs.ReadCertificatesFile(s.ACME.CARoots); err != nil {
				add(key+".acme.ca_roots", err, false)
			}
		}
		if s.Certs != CertsFiles && s.Certs != CertsACME {
			continue
		}
		loaded, err := certs.LoadFiles(SiteFiles(s), now)
		var fps certs.FileProblems
		switch {
		case errors.As(err, &fps):
			for _, p := range fps {
				add(key+"."+p.Field, p.Err, false)
			}
			continue
		case err != nil:
			add(key, err, false)
			continue
		}
		for _, w := range loaded.Warnings {
			add(key+"."+w.Field, w.Err, true)
		}
	}
	for i, p := range cfg.Pool {
		key := fmt.Sprintf("pool.%d", i)
		_, warnings, err := PoolTLS(p, now)
		var fps certs.FileProblems
		switch {
		case errors.As(err, &fps):
			for _, fp := range fps {
				add(key+"."+fp.Field, fp.Err, false)
			}
		case err != nil:
			add(key, err, false)
		}
		for _, w := range warnings {
			add(key+"."+w.Field, w.Err, true)
		}
	}
	return ps
}

// SiteFiles is the certs.FileSet of a site with certs = "files" or "acme":
// what the server loads with certs.LoadFiles, and CheckFiles checks.
func SiteFiles(s Site) certs.FileSet {
	fs := certs.FileSet{PQRoot: s.PQRoot, Names: s.ServerNames, PQOnly: s.Certs == CertsACME}
	for _, p := range s.Cert {
		fs.Pairs = append(fs.Pairs, certs.FilePair{Cert: p.Cert, Key: p.Key})
	}
	return fs
}
