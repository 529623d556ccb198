package controller

import (
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"fmt"
	"log/slog"
	"time"

	"github.com/ote-edge/ote/cloud/pki"
	"github.com/ote-edge/ote/cloud/tunnel"
)

// renew answers a connected child's request for a fresh certificate.
// A level's certificate is renewed as a CA again.
func (c *Controller) renew(ctx context.Context, name string, level bool, req *tunnel.Renew, log *slog.Logger) *tunnel.Renewed {
	certPEM, notAfter, err := c.issueFor(name, level, req.CSR)
	if err != nil {
		log.Warn("renewal refused", "err", err)
		return &tunnel.Renewed{Error: err.Error()}
	}
	c.statusq.set(name, map[string]any{"certificateNotAfter": notAfter.UTC().Format(time.RFC3339)})
	log.Info("certificate renewed", "notAfter", notAfter)
	return &tunnel.Renewed{Cert: certPEM}
}

// issueFor signs a CSR for the named cluster.
func (c *Controller) issueFor(name string, level bool, csrDER []byte) ([]byte, time.Time, error) {
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err == nil {
		err = csr.CheckSignature()
	}
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("bad certificate request: %w", err)
	}
	certPEM, _, err := c.ca.Load().Issue(pki.Request{CommonName: name, Client: true, CA: level, Validity: c.cfg.CertValidity, PublicKey: csr.PublicKey})
	if err != nil {
		return nil, time.Time{}, err
	}
	cert, err := pki.ParseCert(certPEM)
	if err != nil {
		return nil, time.Time{}, err
	}
	return certPEM, cert.NotAfter, nil
}

// renewExpired gives a cluster whose certificate expired a new one, if it
// proves it holds the old key, its expiry is within the grace period, and
// the cluster was not revoked (its EdgeCluster still exists).
func (c *Controller) renewExpired(ctx context.Context, req *tunnel.EnrollRequest, refuse func(string, ...any) *tunnel.EnrollResponse) *tunnel.EnrollResponse {
	chain, err := pki.ParseChain(req.OldCert)
	if err != nil {
		return refuse("old certificate: %v", err)
	}
	old, inter := chain[0], x509.NewCertPool()
	for _, ic := range chain[1:] {
		inter.AddCert(ic)
	}
	ca := c.ca.Load()
	// Verify as of just before expiry: expiry is what this path forgives.
	if _, err := old.Verify(x509.VerifyOptions{Roots: ca.Pool(), Intermediates: inter, CurrentTime: old.NotAfter.Add(-time.Second), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return refuse("old certificate is not from this tree: %v", err)
	}
	if time.Now().After(old.NotAfter.Add(c.cfg.RenewGrace)) {
		return refuse("certificate expired on %s, beyond the %v grace period: enroll again with a token", old.NotAfter.Format(time.RFC3339), c.cfg.RenewGrace)
	}
	pub, ok := old.PublicKey.(*ecdsa.PublicKey)
	sum := sha256.Sum256(req.CSR)
	if !ok || !ecdsa.VerifyASN1(pub, sum[:], req.Proof) {
		return refuse("no proof of the old certificate's key")
	}
	name := old.Subject.CommonName
	c.mu.Lock()
	revoked := c.revokedLocked(name, old)
	c.mu.Unlock()
	if revoked {
		return refuse("cluster %s was revoked", name)
	}
	// Enrolled here and no longer registered: deleted.
	if ok, err := c.registry.exists(ctx, name); err != nil || (!ok && old.CheckSignatureFrom(ca.Cert) == nil) {
		return refuse("cluster %s is not registered (deleted or revoked)", name)
	}
	certPEM, notAfter, err := c.issueFor(name, old.IsCA, req.CSR)
	if err != nil {
		return refuse("%v", err)
	}
	c.statusq.set(name, map[string]any{"certificateNotAfter": notAfter.UTC().Format(time.RFC3339)})
	c.cfg.Log.Info("expired certificate renewed", "cluster", name, "expired", old.NotAfter)
	return &tunnel.EnrollResponse{Cluster: name, Cert: certPEM, CA: ca.RootPEM}
}
