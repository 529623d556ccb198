package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestCAIssuesCertificatesThatVerify(t *testing.T) {
	dir := t.TempDir()
	ca, err := LoadOrCreateCA(dir, "test-root")
	if err != nil {
		t.Fatal(err)
	}
	again, err := LoadOrCreateCA(dir, "ignored")
	if err != nil || again.Hash() != ca.Hash() {
		t.Fatalf("second LoadOrCreateCA = %v, hash %x; want the same CA %x", err, again.Hash(), ca.Hash())
	}
	if fi, _ := os.Stat(filepath.Join(dir, "ca.key")); fi.Mode().Perm() != 0o600 {
		t.Errorf("ca.key mode = %v, want 0600", fi.Mode().Perm())
	}

	certFile, keyFile, err := ca.IssueFiles(dir, "server", Request{
		CommonName: "apiserver", DNSNames: []string{"localhost"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)},
		Server: true, Validity: time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	leaf, _ := x509.ParseCertificate(pair.Certificate[0])
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "localhost", KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		t.Errorf("server certificate does not verify: %v", err)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err == nil {
		t.Error("a server-only certificate verified for client auth")
	}

	// A valid certificate is kept; one from another CA is replaced.
	before, _ := os.ReadFile(certFile)
	ca.IssueFiles(dir, "server", Request{CommonName: "apiserver", Server: true, Validity: time.Hour})
	if after, _ := os.ReadFile(certFile); string(after) != string(before) {
		t.Error("IssueFiles replaced a valid certificate")
	}
	other, _ := LoadOrCreateCA(t.TempDir(), "other")
	other.IssueFiles(dir, "server", Request{CommonName: "apiserver", Server: true, Validity: time.Hour})
	ca.IssueFiles(dir, "server", Request{CommonName: "apiserver", Server: true, Validity: time.Hour})
	b, _ := os.ReadFile(certFile)
	if c, _ := ParseCert(b); c.CheckSignatureFrom(ca.Cert) != nil {
		t.Error("IssueFiles kept a certificate of a foreign CA")
	}
}

// A level's intermediate CA issues certificates that verify against the
// root, with the chain behind them, and never outlive it.
func TestIntermediate(t *testing.T) {
	root, err := NewCA("root")
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	chain, _, err := root.Issue(Request{CommonName: "region", CA: true, Validity: time.Hour, PublicKey: key.Public()})
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, _ := EncodeKey(key)
	mid, err := ParseIntermediate(chain, keyPEM, root.CertPEM)
	if err != nil {
		t.Fatal(err)
	}
	if mid.IsRoot() || mid.Hash() != root.Hash() {
		t.Errorf("intermediate: root %v, hash of the root %v", mid.IsRoot(), mid.Hash() == root.Hash())
	}
	leafPEM, _, err := mid.Issue(Request{CommonName: "box", Client: true, Validity: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	certs, err := ParseChain(leafPEM)
	if err != nil || len(certs) != 2 {
		t.Fatalf("leaf chain: %d certificates, %v", len(certs), err)
	}
	inter := x509.NewCertPool()
	inter.AddCert(certs[1])
	if _, err := certs[0].Verify(x509.VerifyOptions{Roots: root.Pool(), Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("leaf does not verify against the root: %v", err)
	}
	if certs[0].NotAfter.After(mid.Cert.NotAfter) {
		t.Errorf("leaf expires %v, after its CA (%v)", certs[0].NotAfter, mid.Cert.NotAfter)
	}
	// Someone else's key with the chain is refused.
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	otherPEM, _ := EncodeKey(other)
	if _, err := ParseIntermediate(chain, otherPEM, root.CertPEM); err == nil {
		t.Error("an intermediate with a foreign key was accepted")
	}
	// A chain from another tree is refused.
	foreign, _ := NewCA("foreign")
	if _, err := ParseIntermediate(chain, keyPEM, foreign.CertPEM); err == nil {
		t.Error("an intermediate of another tree was accepted")
	}
}
