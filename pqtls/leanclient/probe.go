package leanclient

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/pqedge/pqedge/pqtls"
)

// ProbeConfig says what Probe tries.
type ProbeConfig struct {
	ServerName string
	// Timeout bounds each handshake (default 10s).
	Timeout time.Duration
	// Groups to test; empty means SupportedGroups().
	Groups []tls.CurveID
	// SplitDelay is the pause between the two writes of a split
	// ClientHello (default 20ms, see Config.SplitDelay).
	SplitDelay time.Duration
}

// GroupSupport is what a server does with one group.
type GroupSupport struct {
	Group tls.CurveID
	// Direct: the handshake completed when the client offered only this
	// group, with a key share for it.
	Direct bool
	// ViaHRR: the handshake completed through a HelloRetryRequest when the
	// client listed this group but sent only a GREASE key share
	// (RFC 8701), so the server had to ask for it.
	ViaHRR bool
	// Err is why the direct handshake failed, if it did.
	Err error
}

// Accepted reports whether the server negotiated the group either way.
func (g GroupSupport) Accepted() bool { return g.Direct || g.ViaHRR }

// CertificateProbe is what a server serves for one signature_algorithms
// list.
type CertificateProbe struct {
	Name    string // the list's name: "ECDSA", "RSA", "Ed25519", "mldsa44"...
	Offered []tls.SignatureScheme
	// Result is nil when the handshake failed (Err says why: usually a
	// handshake_failure alert, the server has no fitting certificate).
	Result *Result
	Err    error
}

// SplitProbe is whether a server completes a handshake whose ClientHello
// arrives split.
type SplitProbe struct {
	Mode SplitMode
	Err  error // nil when the handshake completed
}

// ProbeReport is everything Probe found.
type ProbeReport struct {
	Address    string
	ServerName string
	Groups     []GroupSupport
	// Preference is the server's order among the accepted groups: offer all
	// (with key shares), record the pick, remove it, repeat.
	Preference []tls.CurveID
	// FollowsClientOrder is true when offering the accepted groups in
	// reverse order changed the server's first pick.
	FollowsClientOrder bool
	Certificates       []CertificateProbe
	Splits             []SplitProbe
}

// probeSignatureLists are the signature_algorithms lists Probe offers one
// at a time, to see which certificate the server holds for each.
var probeSignatureLists = []struct {
	name    string
	schemes []tls.SignatureScheme
}{
	{"ECDSA", []tls.SignatureScheme{tls.ECDSAWithP256AndSHA256, tls.ECDSAWithP384AndSHA384, tls.ECDSAWithP521AndSHA512}},
	{"RSA", []tls.SignatureScheme{tls.PSSWithSHA256, tls.PSSWithSHA384, tls.PSSWithSHA512, 0x0809, 0x080a, 0x080b, tls.PKCS1WithSHA256, tls.PKCS1WithSHA384, tls.PKCS1WithSHA512}},
	{"Ed25519", []tls.SignatureScheme{tls.Ed25519}},
	{"mldsa44", []tls.SignatureScheme{tls.MLDSA44}},
	{"mldsa65", []tls.SignatureScheme{tls.MLDSA65}},
	{"mldsa87", []tls.SignatureScheme{tls.MLDSA87}},
}

// probeCertAlgorithms is the signature_algorithms_cert of the certificate
// probes: every scheme of every list.
var probeCertAlgorithms = func() []tls.SignatureScheme {
	var all []tls.SignatureScheme
	for _, l := range probeSignatureLists {
		all = append(all, l.schemes...)
	}
	return all
}()

// Probe finds out which groups a server accepts (directly or only after a
// HelloRetryRequest), its group preference, the certificate it serves for
// each family of signature algorithms, and whether it survives a split
// ClientHello. It returns an error only when the server cannot be reached,
// is not a TLS server (KindNotTLS: it answered in another protocol), or
// answers no ClientHello at all (ErrNoAnswer).
func Probe(ctx context.Context, addr string, pc ProbeConfig) (*ProbeReport, error) {
	p := &prober{ctx: ctx, addr: addr, pc: pc, report: &ProbeReport{Address: addr, ServerName: pc.ServerName}}
	if len(p.pc.Groups) == 0 {
		p.pc.Groups = SupportedGroups()
	}
	if err := p.probeGroups(); err != nil {
		return p.report, err
	}
	p.probePreference()
	p.probeCertificates()
	p.probeSplits()
	return p.report, nil
}

type prober struct {
	ctx    context.Context
	addr   string
	pc     ProbeConfig
	report *ProbeReport
}

func (p *prober) handshake(cfg Config) (*Result, error) {
	cfg.ServerName = p.pc.ServerName
	cfg.Timeout = p.pc.Timeout
	cfg.SplitDelay = p.pc.SplitDelay
	// The signature is checked so that a server with a broken key shows up;
	// the chain is not, since a probe meets private CAs.
	cfg.VerifySignature = true
	cfg.CloseNotify = true
	return Dial(p.ctx, p.addr, &cfg)
}

// ErrNoAnswer is the Err of the KindTimeout error Probe returns when the
// server accepts connections but answers neither a post-quantum nor a
// small classical ClientHello: not a TLS server, or a stalled one.
var ErrNoAnswer = errors.New("the server accepted the connection but answered nothing to a TLS ClientHello: it is not a TLS server, or it is stalled")

// probeGroups tests each group twice: with its own key share, and with a
// GREASE share that forces a HelloRetryRequest (RFC 8446 Section 4.1.4).
// A server that speaks another protocol ends the probe at once, and so
// does one that answers nothing, rather than costing two timeouts per
// group.
func (p *prober) probeGroups() error {
	reached := false
	for i, g := range p.pc.Groups {
		gs := GroupSupport{Group: g}
		res, err := p.handshake(Config{Groups: []tls.CurveID{g}})
		if KindOf(err) == KindNotTLS {
			return err
		}
		if i == 0 && silent(res, err) {
			// Some servers and middleboxes stall on a large post-quantum
			// ClientHello (split across TCP segments) but answer a small
			// classical one: only both unanswered mean no TLS server.
			res2, err2 := p.handshake(Config{Groups: []tls.CurveID{tls.X25519}})
			if KindOf(err2) == KindNotTLS {
				return err2
			}
			if silent(res2, err2) {
				return &Error{Kind: KindTimeout, Op: "probe", Err: fmt.Errorf("%w (a %s ClientHello, then a small x25519 one, waited %s each)",
					ErrNoAnswer, pqtls.GroupName(g), p.timeout())}
			}
		}
		switch {
		case err == nil && res.Group == g && !res.HelloRetry:
			gs.Direct = true
		case err == nil:
			gs.Err = errors.New("server did not pick the only group offered")
		default:
			gs.Err = err
		}
		if k := KindOf(err); err == nil || (k != KindDial && k != KindTimeout) {
			reached = true
		} else if !reached && k == KindDial {
			// Nothing listens: no point trying every group.
			return err
		}
		res, err = p.handshake(Config{Groups: []tls.CurveID{greaseGroup, g}, KeyShares: []tls.CurveID{greaseGroup}})
		gs.ViaHRR = err == nil && res.HelloRetry && res.Group == g
		p.report.Groups = append(p.report.Groups, gs)
	}
	return nil
}

// timeout is each handshake's limit, as Dial applies it.
func (p *prober) timeout() time.Duration {
	if p.pc.Timeout > 0 {
		return p.pc.Timeout
	}
	return defaultTimeout
}

// silent reports a handshake that timed out without a byte from the server.
func silent(res *Result, err error) bool {
	return KindOf(err) == KindTimeout && res != nil && res.BytesReceived == 0
}

func (p *prober) acceptedGroups() []GroupSupport {
	var out []GroupSupport
	for _, g := range p.report.Groups {
		if g.Accepted() {
			out = append(out, g)
		}
	}
	return out
}

// offer builds a ClientHello offering groups, with key shares for those the
// server accepts directly.
func offer(groups []GroupSupport) Config {
	var cfg Config
	for _, g := range groups {
		cfg.Groups = append(cfg.Groups, g.Group)
		if g.Direct {
			cfg.KeyShares = append(cfg.KeyShares, g.Group)
		}
	}
	if len(cfg.KeyShares) == 0 {
		cfg.KeyShares = []tls.CurveID{greaseGroup}
		cfg.Groups = append([]tls.CurveID{greaseGroup}, cfg.Groups...)
	}
	return cfg
}

func (p *prober) probePreference() {
	left := p.acceptedGroups()
	if len(left) > 1 {
		rev := slices.Clone(left)
		slices.Reverse(rev)
		a, errA := p.handshake(offer(left))
		b, errB := p.handshake(offer(rev))
		p.report.FollowsClientOrder = errA == nil && errB == nil && a.Group != b.Group
	}
	for len(left) > 0 {
		res, err := p.handshake(offer(left))
		if err != nil {
			return
		}
		i := slices.IndexFunc(left, func(g GroupSupport) bool { return g.Group == res.Group })
		if i < 0 {
			return
		}
		p.report.Preference = append(p.report.Preference, res.Group)
		left = slices.Delete(left, i, i+1)
	}
}

// bestGroup is the group to use for the remaining probes: the server's
// favourite, else any accepted group, else X25519MLKEM768.
func (p *prober) bestGroup() Config {
	if len(p.report.Preference) > 0 {
		for _, g := range p.report.Groups {
			if g.Group == p.report.Preference[0] {
				return offer([]GroupSupport{g})
			}
		}
	}
	if acc := p.acceptedGroups(); len(acc) > 0 {
		return offer(acc[:1])
	}
	return Config{Groups: []tls.CurveID{tls.X25519MLKEM768}}
}

func (p *prober) probeCertificates() {
	for _, list := range probeSignatureLists {
		cfg := p.bestGroup()
		cfg.SignatureAlgorithms = list.schemes
		// The list asks for a leaf of one family; any signature in the
		// chain is fine (a server that serves only chains the client can
		// verify, RFC 8446 Section 4.4.2.2, would otherwise refuse an
		// ML-DSA leaf under a CA of another level).
		cfg.SignatureAlgorithmsCert = probeCertAlgorithms
		res, err := p.handshake(cfg)
		cp := CertificateProbe{Name: list.name, Offered: list.schemes, Err: err}
		if err == nil {
			cp.Result = res
		}
		p.report.Certificates = append(p.report.Certificates, cp)
	}
}

func (p *prober) probeSplits() {
	for _, mode := range []SplitMode{SplitRecords, SplitWrites, SplitRecords | SplitWrites} {
		cfg := p.bestGroup()
		cfg.SplitClientHello = mode
		_, err := p.handshake(cfg)
		p.report.Splits = append(p.report.Splits, SplitProbe{Mode: mode, Err: err})
	}
}
