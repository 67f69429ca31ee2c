package certs_test

import (
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/pqedge/pqedge/certs"
)

// A private ML-DSA PKI: an ML-DSA-87 root with an ML-DSA-44 intermediate,
// and a leaf whose handshake still fits TCP's initial window.
func ExampleCA_Issue() {
	dir, err := os.MkdirTemp("", "pqedge-ca-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ca, err := certs.InitCA(filepath.Join(dir, "ca"), certs.CAOptions{
		Alg: certs.AlgMLDSA87, Intermediate: true, IntermediateAlg: certs.AlgMLDSA44,
	})
	if err != nil {
		log.Fatal(err)
	}
	leaf, err := ca.Issue(certs.LeafOptions{Names: []string{"pq.example"}, Alg: certs.AlgMLDSA44})
	if err != nil {
		log.Fatal(err)
	}
	if err := certs.WriteKeyPair(filepath.Join(dir, "site"), leaf); err != nil {
		log.Fatal(err)
	}
	loaded, err := certs.LoadKeyPair(filepath.Join(dir, "site.crt"), filepath.Join(dir, "site.key"))
	if err != nil {
		log.Fatal(err)
	}
	if err := certs.Check(loaded.Leaf, []string{"pq.example"}, time.Now()); err != nil {
		log.Fatal(err)
	}
	key, _ := certs.DescribeKey(loaded.Leaf.PublicKey)
	flight := certs.EstimateFlight(loaded.Certificate, key)
	fmt.Println(key.Name, len(loaded.Certificate), "certificates, fits initial window:", flight.FitsInitialWindow)
	// Output: ML-DSA-44 2 certificates, fits initial window: true
}
