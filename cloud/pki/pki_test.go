package pki

import (
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
