package compat

import (
	"os/exec"
	"strconv"
	"strings"
)

// cases lists the clients. Expectations come from what each client offers
// (its capture in pqtls/testdata/clienthello) and the server's rules (pq-only refuses classical groups;
// pq_certs=trusted needs certificate_authorities, which no browser sends;
// always serves ML-DSA to every client offering the scheme); where the
// outcome is what the suite exists to find out, it is recorded, not checked.
func cases(chromium, firefox, certutil, curl string) []clientCase {
	protected := func(sig string) expect {
		return expect{group: "X25519MLKEM768", signature: sig, handshake: "ok", page: "protected"}
	}
	sigFor := func(m mode, offersMLDSA bool) string {
		if m.pqCerts == "always" && offersMLDSA {
			return "mldsa65"
		}
		return "ecdsa_secp256r1_sha256"
	}
	always := func(m mode) bool { return m.pqCerts == "always" }
	cs := []clientCase{
		{
			name: "chromium", target: "inspect page (classical root trusted)",
			run: func(e *env) Outcome {
				return Chromium(e.ctx, chromium, certutil, e.t.TempDir(), e.url+"/", Trust{e.class}, nil, 0)
			},
			want: func(m mode) expect {
				if always(m) {
					// Chromium offers ML-DSA, gets the ML-DSA chain, cannot
					// verify it and aborts (alert: unknown certificate).
					return expect{handshake: "failed: certificate"}
				}
				return protected("ecdsa_secp256r1_sha256")
			},
		},
		{
			name: "chromium", target: "inspect page (ML-DSA leaf allowed by SPKI)",
			onlyIn: func(m mode) bool { return m.pqCerts != "off" },
			run: func(e *env) Outcome {
				return Chromium(e.ctx, chromium, certutil, e.t.TempDir(), e.url+"/", Trust{e.class}, e.spki, 0)
			},
			// Once the chain itself is accepted, Chromium verifies the
			// ML-DSA-65 CertificateVerify and the page renders.
			want: func(m mode) expect { return protected(sigFor(m, true)) },
		},
		{
			name: "firefox-esr", target: "inspect page (classical root trusted)",
			run: func(e *env) Outcome {
				return Firefox(e.ctx, firefox, certutil, e.t.TempDir(), e.url+"/", Trust{e.class})
			},
			// Firefox offers no ML-DSA: always the classical chain.
			want: func(m mode) expect { return protected("ecdsa_secp256r1_sha256") },
		},
		{
			name: "curl (bookworm, OpenSSL 3.0)", target: "inspect page",
			run: func(e *env) Outcome {
				return Command(exec.CommandContext(e.ctx, curl, "-sS", "-i", "--cacert", e.roots, e.url+"/"), "")
			},
			want: func(m mode) expect {
				if m.policy == "pq-only" {
					return expect{handshake: "failed: no_common_group"}
				}
				return expect{group: "x25519", signature: "ecdsa_secp256r1_sha256", handshake: "ok", page: "not protected"}
			},
		},
		{
			name: "curl (bookworm, OpenSSL 3.0)", target: "PQEdge-PQ-Warning header",
			onlyIn: func(m mode) bool { return m.policy == "pq-warn" },
			run: func(e *env) Outcome {
				out := Command(exec.CommandContext(e.ctx, curl, "-sS", "-o", "/dev/null", "-D", "-", "--cacert", e.roots, e.url+"/"), "")
				if strings.Contains(strings.ToLower(out.Body), "pqedge-pq-warning: this connection uses classical key exchange") {
					out.Verdict = "warning header"
				}
				return out
			},
			want: func(m mode) expect {
				return expect{group: "x25519", handshake: "ok", page: "warning header"}
			},
		},
		{
			name: "curl (trixie, OpenSSL 3.5)", target: "inspect page",
			run: func(e *env) Outcome {
				return Command(e.trixie.Command(e.ctx, "curl", "-sS", "-i", "--cacert", e.inRoot, e.url+"/"), "")
			},
			want: func(m mode) expect { return protected(sigFor(m, true)) },
		},
		{
			name: "curl (trixie, OpenSSL 3.5)", target: "inspect page over HTTP/3 (--http3-only)", quic: true,
			run: func(e *env) Outcome {
				return Command(e.trixie.Command(e.ctx, "curl", "-sS", "-i", "--http3-only", "--cacert", e.inRoot, e.url+"/"), "")
			},
			// As over TCP: OpenSSL offers ML-DSA and trusts the ML-DSA
			// root, and the chain (ML-DSA-65 leaf, ML-DSA-87 CA) exceeds
			// the anti-amplification budget but still arrives.
			want: func(m mode) expect { return protected(sigFor(m, true)) },
		},
		{
			name: "chromium", target: "inspect page over HTTP/3 (QUIC forced, classical root trusted)", quic: true,
			run: func(e *env) Outcome {
				port, _ := strconv.Atoi(e.port)
				return ChromiumQUIC(e.ctx, chromium, certutil, e.t.TempDir(), e.url+"/", port, Trust{e.class})
			},
			// Unlike over TCP, Chromium's QUIC ClientHello offers no
			// ML-DSA signature (pqtls/quichello's chromium capture): even
			// under always it gets the classical chain and stays served.
			want: func(m mode) expect { return protected("ecdsa_secp256r1_sha256") },
		},
		{
			name: "go", target: "inspect page",
			run: goClient,
			// Go 1.27 leaves ML-DSA out of signature_algorithms_cert
			// (go.dev/issue/82536): it cannot verify the ML-DSA-87
			// signature on the ML-DSA chain, so it gets the classical
			// chain even under always (RFC 8446 section 4.4.2.2).
			want: func(m mode) expect { return protected(sigFor(m, false)) },
		},
	}
	// openssl s_client forcing each post-quantum group.
	for _, g := range pqGroups {
		cs = append(cs, clientCase{
			name: "openssl s_client", target: "-groups " + g,
			onlyIn: func(m mode) bool { return m.policy == "pq-preferred" && m.pqCerts == "off" },
			run:    func(e *env) Outcome { return sClient(e, e.port, "-groups", g) },
			want: func(m mode) expect {
				return expect{group: g, signature: "ecdsa_secp256r1_sha256", handshake: "ok", page: "protected"}
			},
		})
	}
	cs = append(cs, clientCase{
		// A first key share the server does not pick costs a
		// HelloRetryRequest; the record must say so.
		name: "openssl s_client", target: "-groups x25519:X25519MLKEM768 (x25519 key share first)",
		onlyIn: func(m mode) bool { return m.policy == "pq-only" },
		run:    func(e *env) Outcome { return sClient(e, e.port, "-groups", "x25519:X25519MLKEM768") },
		want:   func(m mode) expect { return expect{group: "X25519MLKEM768", handshake: "ok", page: "protected"} },
	})
	// The site's ML-DSA chain is an ML-DSA-65 leaf signed by the ML-DSA-87
	// local CA: a client must allow both to verify it, and pqedge serves a
	// chain only to a client that can (RFC 8446 section 4.4.2.2).
	cs = append(cs, clientCase{
		name: "openssl s_client", target: "-sigalgs mldsa65:mldsa87 (site, ML-DSA-65 leaf under the ML-DSA-87 CA)",
		onlyIn: always,
		run:    func(e *env) Outcome { return sClient(e, e.port, "-sigalgs", "mldsa65:mldsa87") },
		want: func(m mode) expect {
			return expect{group: "X25519MLKEM768", signature: "mldsa65", handshake: "ok", page: "protected"}
		},
	})
	// One ML-DSA signature algorithm each, against the site and against the
	// compat listeners (one leaf each, served whatever the client can
	// verify: the matrix asks the client, not the RFC).
	for _, sig := range []string{"mldsa44", "mldsa65", "mldsa87"} {
		cs = append(cs, clientCase{
			name: "openssl s_client", target: "-sigalgs " + sig + " (site, ML-DSA-65 leaf)",
			onlyIn: always,
			run:    func(e *env) Outcome { return sClient(e, e.port, "-sigalgs", sig) },
			want: func(m mode) expect {
				// No chain whose every signature the client allows: the
				// ML-DSA leaf is signed with ML-DSA-87, the classical
				// chain with ECDSA.
				return expect{handshake: "failed: certificate"}
			},
		}, clientCase{
			name: "openssl s_client", target: "-sigalgs " + sig + " (compat X25519MLKEM768/" + sig + ")",
			onlyIn:   always,
			listener: func(e *env) string { return "compat-X25519MLKEM768-" + sig },
			run: func(e *env) Outcome {
				return sClient(e, e.edge.port("compat-X25519MLKEM768-"+sig), "-sigalgs", sig)
			},
			want: func(m mode) expect {
				return expect{group: "X25519MLKEM768", signature: sig, handshake: "ok", page: "protected"}
			},
		})
	}
	// The compat page in Chromium, with and without the ML-DSA leaves
	// allowed. The page's own site serves the classical chain (trusted).
	for _, withPQ := range []bool{false, true} {
		target := "compat page (classical root trusted)"
		if withPQ {
			target = "compat page (ML-DSA leaves allowed by SPKI)"
		}
		cs = append(cs, clientCase{
			name: "chromium", target: target, onlyIn: func(m mode) bool { return m.pqCerts == "trusted" },
			run: func(e *env) Outcome {
				var spki []string
				if withPQ {
					spki = e.spki
				}
				out := Chromium(e.ctx, chromium, certutil, e.t.TempDir(), e.url+"/compat/", Trust{e.class}, spki, 15000)
				if !strings.Contains(out.Body, `data-done="true"`) {
					out.Err = errorf("the compat page did not finish: %s", shorten(out.Body))
				}
				return out
			},
			want: func(m mode) expect {
				page := "compat page: 2/8 ok (X25519MLKEM768-ecdsa-p256, x25519-ecdsa-p256)"
				if withPQ {
					page = "compat page: 8/8 ok (X25519MLKEM768-ecdsa-p256, X25519MLKEM768-mldsa44, X25519MLKEM768-mldsa65, X25519MLKEM768-mldsa87, x25519-ecdsa-p256, x25519-mldsa44, x25519-mldsa65, x25519-mldsa87)"
				}
				return expect{group: "X25519MLKEM768", signature: "ecdsa_secp256r1_sha256", handshake: "ok", page: page}
			},
		})
	}
	return cs
}
