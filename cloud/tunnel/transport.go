package tunnel

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/quic-go/quic-go"
)

// ALPN protocols; see the package documentation.
const (
	ALPN       = "ote/1"
	ALPNEnroll = "ote-enroll/1"
)

// ServerName is the name every parent's certificate carries and every
// child verifies, against the tree's CA: boxes reach their parents by
// addresses (NAT, QEMU's 10.0.2.2) that no certificate could list.
const ServerName = "ote-parent"

// QUICConfig suits weak links: keepalives well inside NAT timeouts, and
// an idle timeout long enough to ride out short outages.
func QUICConfig() *quic.Config {
	return &quic.Config{
		HandshakeIdleTimeout: 10 * time.Second,
		MaxIdleTimeout:       60 * time.Second,
		KeepAlivePeriod:      15 * time.Second,
	}
}

// ServerTLS is a parent's TLS: its certificate chain (leaf, then the tree
// CA, which enrolling boxes pin) and the tree CA for client certificates.
// Enrolling boxes have none yet; the parent requires one on ALPN.
func ServerTLS(chain tls.Certificate, ca *x509.Certificate) *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &tls.Config{
		Certificates: []tls.Certificate{chain},
		ClientCAs:    pool,
		ClientAuth:   tls.VerifyClientCertIfGiven,
		NextProtos:   []string{ALPN, ALPNEnroll},
		MinVersion:   tls.VersionTLS13,
	}
}

// ErrCAMismatch means the parent's chain does not lead to the pinned CA.
var ErrCAMismatch = errors.New("the parent's certificate is not from the tree CA in the token")

// EnrollTLS is a box's TLS before it has an identity: it accepts the
// parent only if the presented chain contains the CA whose SHA-256 is
// caHash and the leaf is that CA's certificate for ServerName.
func EnrollTLS(caHash [32]byte) *tls.Config {
	return &tls.Config{
		ServerName:         ServerName,
		NextProtos:         []string{ALPNEnroll},
		MinVersion:         tls.VersionTLS13,
		InsecureSkipVerify: true, // verified below, against the pinned CA
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			var ca *x509.Certificate
			for _, der := range raw {
				if sha256.Sum256(der) == caHash {
					c, err := x509.ParseCertificate(der)
					if err != nil {
						return err
					}
					ca = c
				}
			}
			if ca == nil || len(raw) == 0 {
				return ErrCAMismatch
			}
			leaf, err := x509.ParseCertificate(raw[0])
			if err != nil {
				return err
			}
			pool, inter := x509.NewCertPool(), x509.NewCertPool()
			pool.AddCert(ca)
			for _, der := range raw[1:] { // a lower level's intermediate CAs
				if c, err := x509.ParseCertificate(der); err == nil {
					inter.AddCert(c)
				}
			}
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, DNSName: ServerName}); err != nil {
				return fmt.Errorf("%w: %v", ErrCAMismatch, err)
			}
			return nil
		},
	}
}

// ClientTLS is an enrolled cluster's TLS towards any parent of its tree.
func ClientTLS(identity tls.Certificate, ca *x509.Certificate) *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &tls.Config{
		Certificates: []tls.Certificate{identity},
		RootCAs:      pool,
		ServerName:   ServerName,
		NextProtos:   []string{ALPN},
		MinVersion:   tls.VersionTLS13,
	}
}

// Enroll asks the parent at addr for an identity. A refusal comes back as
// an error carrying the parent's reason.
func Enroll(ctx context.Context, addr string, caHash [32]byte, req *EnrollRequest) (*EnrollResponse, error) {
	conn, err := quic.DialAddr(ctx, addr, EnrollTLS(caHash), QUICConfig())
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	defer conn.CloseWithError(0, "")
	str, err := conn.OpenStreamSync(ctx)
	if err != nil {
		return nil, err
	}
	if err := WriteFrame(str, req); err != nil {
		return nil, err
	}
	str.Close() // no more requests
	if d, ok := ctx.Deadline(); ok {
		str.SetReadDeadline(d)
	}
	m, err := NewReader(str).Read()
	if err != nil {
		return nil, fmt.Errorf("enrollment answer: %w", err)
	}
	resp, ok := m.(*EnrollResponse)
	if !ok {
		return nil, fmt.Errorf("enrollment answer: unexpected %T", m)
	}
	if resp.Error != "" {
		return resp, &RefusedError{Reason: resp.Error}
	}
	return resp, nil
}

// RefusedError is a parent's refusal of an enrollment.
type RefusedError struct{ Reason string }

func (e *RefusedError) Error() string { return "enrollment refused: " + e.Reason }
