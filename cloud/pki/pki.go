// Package pki is a tree's root of trust: one CA, created at first start
// and kept on disk, and the certificates it issues, to the Kubernetes API
// server and its clients and, through enrollment, to the clusters of the
// tree. Keys are ECDSA P-256; files are written atomically, keys 0600.
package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// CA signs certificates. A tree has one root CA; every level below the
// root signs with an intermediate CA of its own, issued by its parent, so
// that an identity from any level verifies against the root everywhere.
type CA struct {
	Cert    *x509.Certificate
	CertPEM []byte
	Key     crypto.Signer
	// Chain is the PEM of Cert and the intermediates above it, the root
	// excluded: what goes after every certificate this CA issues. Empty
	// for a root.
	Chain []byte
	// Root is the tree's root certificate; Cert itself for a root.
	Root    *x509.Certificate
	RootPEM []byte
}

// caValidity is long: a box must not lose its tree because a CA expired.
const caValidity = 20 * 365 * 24 * time.Hour

// LoadOrCreateCA loads dir/ca.crt and dir/ca.key, creating them on first use.
func LoadOrCreateCA(dir, commonName string) (*CA, error) {
	certFile, keyFile := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key")
	if _, err := os.Stat(certFile); err == nil {
		return LoadCA(certFile, keyFile)
	}
	ca, err := NewCA(commonName)
	if err != nil {
		return nil, err
	}
	keyPEM, err := EncodeKey(ca.Key)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if err := WriteFileAtomic(keyFile, keyPEM, 0o600); err != nil {
		return nil, err
	}
	if err := WriteFileAtomic(certFile, ca.CertPEM, 0o644); err != nil {
		return nil, err
	}
	return ca, nil
}

// NewCA creates a self-signed CA.
func NewCA(commonName string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: commonName, Organization: []string{"OTE"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return &CA{Cert: cert, CertPEM: certPEM, Key: key, Root: cert, RootPEM: certPEM}, nil
}

// LoadCA reads a CA certificate and key from PEM files.
func LoadCA(certFile, keyFile string) (*CA, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, err
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, err
	}
	ca, err := ParseCA(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", certFile, err)
	}
	return ca, nil
}

// ParseCA decodes a root CA certificate and its key from PEM.
func ParseCA(certPEM, keyPEM []byte) (*CA, error) {
	return ParseIntermediate(certPEM, keyPEM, certPEM)
}

// ParseIntermediate decodes a level's CA: chainPEM holds its certificate
// first, then any intermediates above it; rootPEM is the tree's root. It
// checks that the key matches and that the chain leads to the root. Given
// the same certificate as chain and root, it is a root CA.
func ParseIntermediate(chainPEM, keyPEM, rootPEM []byte) (*CA, error) {
	chain, err := ParseChain(chainPEM)
	if err != nil {
		return nil, err
	}
	root, err := ParseCert(rootPEM)
	if err != nil {
		return nil, fmt.Errorf("root: %w", err)
	}
	cert := chain[0]
	if !cert.IsCA {
		return nil, errors.New("certificate is not a CA")
	}
	key, err := ParseKey(keyPEM)
	if err != nil {
		return nil, err
	}
	if !publicKeyMatches(cert.PublicKey, key.Public()) {
		return nil, errors.New("the key does not belong to the CA certificate")
	}
	ca := &CA{Cert: cert, CertPEM: EncodeCerts(chain[:1]), Key: key, Root: root, RootPEM: EncodeCerts([]*x509.Certificate{root})}
	if cert.Equal(root) {
		return ca, nil
	}
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(root)
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return nil, fmt.Errorf("CA does not lead to the tree's root: %w", err)
	}
	ca.Chain = EncodeCerts(chain)
	return ca, nil
}

func publicKeyMatches(a, b crypto.PublicKey) bool {
	ka, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ka.Equal(b)
}

// IsRoot says whether ca is its tree's root.
func (ca *CA) IsRoot() bool { return ca.Cert.Equal(ca.Root) }

// Pool is a pool holding the tree's root: what every level verifies
// client certificates against.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Root)
	return p
}

// Hash is the SHA-256 of the tree's root certificate: what an enrollment
// token carries so that a box can pin its tree, whichever level enrolls it.
func (ca *CA) Hash() [32]byte { return Hash(ca.Root) }

// Hash is the SHA-256 of a certificate's DER encoding.
func Hash(c *x509.Certificate) [32]byte { return sha256.Sum256(c.Raw) }

// Request describes a certificate to issue.
type Request struct {
	CommonName   string
	Organization []string
	DNSNames     []string
	IPs          []net.IP
	Server       bool // for TLS servers
	Client       bool // for TLS clients
	Validity     time.Duration
	// PublicKey, when set, is certified (from a CSR); otherwise Issue
	// generates a key and returns it.
	PublicKey crypto.PublicKey
	// CA makes the certificate a level's intermediate CA, which may also
	// serve and connect as that level.
	CA bool
}

// Issue signs a certificate for req and returns it, followed by ca.Chain,
// with the new key's PEM when Issue generated the key. No certificate
// outlives the CA that signs it: its validity is cut to the CA's.
func (ca *CA) Issue(req Request) (certPEM, keyPEM []byte, err error) {
	pub := req.PublicKey
	if pub == nil {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, nil, err
		}
		if keyPEM, err = EncodeKey(key); err != nil {
			return nil, nil, err
		}
		pub = key.Public()
	}
	if req.Validity == 0 {
		return nil, nil, errors.New("pki: a validity is required")
	}
	now := time.Now()
	notAfter := now.Add(req.Validity)
	if notAfter.After(ca.Cert.NotAfter) {
		notAfter = ca.Cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: req.CommonName, Organization: req.Organization},
		DNSNames:     req.DNSNames,
		IPAddresses:  req.IPs,
		NotBefore:    now.Add(-5 * time.Minute), // clocks of small boxes drift
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	if req.CA {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		tmpl.KeyUsage |= x509.KeyUsageCertSign
		req.Server, req.Client = true, true
	}
	if req.Server {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
	}
	if req.Client {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, pub, ca.Key)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: sign %q: %w", req.CommonName, err)
	}
	return append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), ca.Chain...), keyPEM, nil
}

// IssueFiles writes dir/name.crt and dir/name.key for req unless a
// certificate from this CA is there and valid for more than a third of
// req.Validity. It returns the two paths.
func (ca *CA) IssueFiles(dir, name string, req Request) (certFile, keyFile string, err error) {
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	if b, err := os.ReadFile(certFile); err == nil {
		if c, err := ParseCert(b); err == nil && c.CheckSignatureFrom(ca.Cert) == nil &&
			time.Until(c.NotAfter) > req.Validity/3 {
			if _, err := os.Stat(keyFile); err == nil {
				return certFile, keyFile, nil
			}
		}
	}
	certPEM, keyPEM, err := ca.Issue(req)
	if err != nil {
		return "", "", err
	}
	if err := WriteFileAtomic(keyFile, keyPEM, 0o600); err != nil {
		return "", "", err
	}
	return certFile, keyFile, WriteFileAtomic(certFile, certPEM, 0o644)
}

// EncodeKey encodes a private key as PKCS#8 PEM.
func EncodeKey(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// ParseKey decodes a PKCS#8 (or EC) private key from PEM.
func ParseKey(b []byte) (crypto.Signer, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, errors.New("no PEM block")
	}
	if k, err := x509.ParsePKCS8PrivateKey(blk.Bytes); err == nil {
		if s, ok := k.(crypto.Signer); ok {
			return s, nil
		}
		return nil, fmt.Errorf("key of type %T cannot sign", k)
	}
	return x509.ParseECPrivateKey(blk.Bytes)
}

// ParseCert decodes one certificate from PEM.
func ParseCert(b []byte) (*x509.Certificate, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM certificate")
	}
	return x509.ParseCertificate(blk.Bytes)
}

// ParseChain decodes every certificate of a PEM bundle, in order.
func ParseChain(b []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("no PEM certificate")
	}
	return out, nil
}

// EncodeCerts encodes certificates as one PEM bundle.
func EncodeCerts(certs []*x509.Certificate) []byte {
	var b []byte
	for _, c := range certs {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return b
}

// WriteFileAtomic writes data to a temporary file in path's directory,
// syncs it, and renames it over path.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n
}
