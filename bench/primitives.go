package bench

import (
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/mldsa"
	"crypto/mlkem"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"time"

	"github.com/pqedge/pqedge/certs"
	"github.com/pqedge/pqedge/pqtls"
)

// KEMCost is the CPU one key exchange of a group costs, split by side, as
// measured with the standard library's implementations (what a Go server
// runs). KeyGen and Decaps are the client's work, Encaps the server's: for
// a hybrid group, Encaps is ML-KEM encapsulation plus an ephemeral ECDH key
// and the ECDH shared secret.
type KEMCost struct {
	Group                  string
	KeyGen, Encaps, Decaps time.Duration
}

// SignCost is the CPU of one CertificateVerify signature.
type SignCost struct {
	Cert string // CertAlg.Name
	Sign time.Duration
}

// kemOps are a group's three steps; setup runs once, outside the timing.
type kemOps struct {
	keygen, encaps, decaps func() error
}

func ecdhOps(curve ecdh.Curve) (keygen func() error, serverSide func() error, clientSide func() error) {
	client, _ := curve.GenerateKey(rand.Reader)
	server, _ := curve.GenerateKey(rand.Reader)
	keygen = func() error { _, err := curve.GenerateKey(rand.Reader); return err }
	serverSide = func() error {
		k, err := curve.GenerateKey(rand.Reader)
		if err != nil {
			return err
		}
		_, err = k.ECDH(client.PublicKey())
		return err
	}
	clientSide = func() error { _, err := client.ECDH(server.PublicKey()); return err }
	return
}

func mlkem768Ops() (kemOps, error) {
	dk, err := mlkem.GenerateKey768()
	if err != nil {
		return kemOps{}, err
	}
	ek := dk.EncapsulationKey()
	_, ct := ek.Encapsulate()
	return kemOps{
		keygen: func() error { _, err := mlkem.GenerateKey768(); return err },
		encaps: func() error { ek.Encapsulate(); return nil },
		decaps: func() error { _, err := dk.Decapsulate(ct); return err },
	}, nil
}

func mlkem1024Ops() (kemOps, error) {
	dk, err := mlkem.GenerateKey1024()
	if err != nil {
		return kemOps{}, err
	}
	ek := dk.EncapsulationKey()
	_, ct := ek.Encapsulate()
	return kemOps{
		keygen: func() error { _, err := mlkem.GenerateKey1024(); return err },
		encaps: func() error { ek.Encapsulate(); return nil },
		decaps: func() error { _, err := dk.Decapsulate(ct); return err },
	}, nil
}

// groupOps is the package's one switch over groups.
func groupOps(id tls.CurveID) (kemOps, error) {
	both := func(a, b func() error) func() error {
		return func() error {
			if err := a(); err != nil {
				return err
			}
			return b()
		}
	}
	hybrid := func(kem kemOps, err error, curve ecdh.Curve) (kemOps, error) {
		if err != nil {
			return kemOps{}, err
		}
		kg, srv, cli := ecdhOps(curve)
		return kemOps{keygen: both(kem.keygen, kg), encaps: both(kem.encaps, srv), decaps: both(kem.decaps, cli)}, nil
	}
	classical := func(curve ecdh.Curve) (kemOps, error) {
		kg, srv, cli := ecdhOps(curve)
		return kemOps{keygen: kg, encaps: srv, decaps: cli}, nil
	}
	switch id {
	case tls.X25519MLKEM768:
		k, err := mlkem768Ops()
		return hybrid(k, err, ecdh.X25519())
	case tls.SecP256r1MLKEM768:
		k, err := mlkem768Ops()
		return hybrid(k, err, ecdh.P256())
	case tls.SecP384r1MLKEM1024:
		k, err := mlkem1024Ops()
		return hybrid(k, err, ecdh.P384())
	case tls.MLKEM1024:
		return mlkem1024Ops()
	case tls.X25519:
		return classical(ecdh.X25519())
	case tls.CurveP256:
		return classical(ecdh.P256())
	case tls.CurveP384:
		return classical(ecdh.P384())
	case tls.CurveP521:
		return classical(ecdh.P521())
	}
	return kemOps{}, fmt.Errorf("unsupported group %s for primitive timing", pqtls.GroupName(id))
}

// MeasureKEM times a group's key generation, encapsulation and
// decapsulation, each for about d of CPU.
func MeasureKEM(id tls.CurveID, d time.Duration) (KEMCost, error) {
	ops, err := groupOps(id)
	if err != nil {
		return KEMCost{}, err
	}
	c := KEMCost{Group: pqtls.GroupName(id)}
	for _, step := range []struct {
		f   func() error
		out *time.Duration
	}{{ops.keygen, &c.KeyGen}, {ops.encaps, &c.Encaps}, {ops.decaps, &c.Decaps}} {
		if *step.out, err = cpuPerOp(step.f, d); err != nil {
			return KEMCost{}, fmt.Errorf("failed to time %s: %w", c.Group, err)
		}
	}
	return c, nil
}

// MeasureSign times one CertificateVerify signature with key, wrapped in
// alg's signer as the server would be.
func MeasureSign(alg CertAlg, key crypto.Signer, d time.Duration) (SignCost, error) {
	cert := &tls.Certificate{PrivateKey: key}
	if alg.Signer != "" {
		if err := certs.WrapSigner(cert, alg.Signer); err != nil {
			return SignCost{}, err
		}
	}
	signer := cert.PrivateKey.(crypto.Signer)
	// TLS 1.3 signs 64 spaces, a context string and the transcript hash
	// (RFC 8446 Section 4.4.3); the size is what matters for ML-DSA.
	msg := make([]byte, 64+34+32)
	digest := sha256.Sum256(msg)
	var sign func() error
	switch signer.Public().(type) {
	case *mldsa.PublicKey, ed25519.PublicKey:
		sign = func() error { _, err := crypto.SignMessage(signer, rand.Reader, msg, crypto.Hash(0)); return err }
	case *ecdsa.PublicKey:
		sign = func() error { _, err := signer.Sign(rand.Reader, digest[:], crypto.SHA256); return err }
	case *rsa.PublicKey:
		opts := &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA256}
		sign = func() error { _, err := signer.Sign(rand.Reader, digest[:], opts); return err }
	default:
		return SignCost{}, fmt.Errorf("unsupported key type %T", signer.Public())
	}
	per, err := cpuPerOp(sign, d)
	if err != nil {
		return SignCost{}, fmt.Errorf("failed to time %s signing: %w", alg.Name, err)
	}
	return SignCost{Cert: alg.Name, Sign: per}, nil
}

// cpuPerOp runs f repeatedly for about d of this process's CPU and returns
// CPU per call: CPU, not wall time, because other processes share the
// machine. The caller makes sure nothing else in the process is busy.
func cpuPerOp(f func() error, d time.Duration) (time.Duration, error) {
	if err := f(); err != nil { // warm up, and fail early
		return 0, err
	}
	start := SelfCPU()
	wallStart := time.Now()
	n := 0
	for {
		for range 8 {
			if err := f(); err != nil {
				return 0, err
			}
		}
		n += 8
		used := SelfCPU() - start
		// The wall bound keeps a starved process from looping forever.
		if used >= d || time.Since(wallStart) > 20*d {
			if used == 0 {
				used = time.Since(wallStart)
			}
			return used / time.Duration(n), nil
		}
	}
}
