package bench

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"github.com/pqedge/pqedge/certs"
)

// Setup shared by the harnesses that start servers (Matrix, Proxy,
// Overload).

// absWorkDir checks a harness's work directory and makes it absolute:
// the servers it starts resolve paths relative to their own config files.
func absWorkDir(dir string) (string, error) {
	if dir == "" {
		return "", errors.New("no directory for certificates and configs")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("failed to resolve %s: %w", dir, err)
	}
	return abs, nil
}

// makeChains makes, in workDir/certs, one chain for "localhost" per key
// algorithm among algs: the algorithms that differ only in their signer
// share a chain.
func makeChains(workDir string, algs []CertAlg) (map[certs.Alg]*Chain, error) {
	dir := filepath.Join(workDir, "certs")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("failed to make %s: %w", dir, err)
	}
	chains := map[certs.Alg]*Chain{}
	for _, a := range algs {
		if chains[a.Alg] != nil {
			continue
		}
		c, err := MakeChain(dir, a.Alg, []string{"localhost"})
		if err != nil {
			return nil, err
		}
		chains[a.Alg] = c
	}
	return chains, nil
}

// pinHarness moves this process to CPU 1 before anything starts, when pin
// is set and there are two CPUs: what it starts inherits CPU 1, and each
// server under test is moved to CPU 0 once running. It reports whether it
// pinned.
func pinHarness(pin bool) (bool, error) {
	if !pin || runtime.NumCPU() < 2 {
		return false, nil
	}
	if err := PinSelf(1); err != nil {
		return false, err
	}
	// Go sized GOMAXPROCS from the CPUs it could use at start (two) and
	// does not resize it when the affinity changes. Two Ps on one CPU
	// make two OS threads that take turns on it, and under a real-time
	// class (chrt -r 10) neither preempts the other: a runnable thread
	// waits until the running one blocks, or for a 100 ms round-robin
	// quantum.
	runtime.GOMAXPROCS(1)
	return true, nil
}

// placeFront puts a started front (pid and its threads) where every
// measurement runs it: on CPU 0 when the harness is pinned, and out of
// the real-time class it inherited from a real-time harness (frontPolicy:
// SCHED_OTHER at nice -10, as an edge proxy runs in production). kind
// names the front in the error.
func placeFront(pid int, pinned bool, kind string) error {
	if pinned {
		if err := PinTree(pid, 0); err != nil {
			return err
		}
	}
	if normal, nice := frontPolicy(); normal {
		if err := NormalTree(pid, nice); err != nil {
			return fmt.Errorf("failed to move %s out of the real-time class: %w", kind, err)
		}
	}
	return nil
}
