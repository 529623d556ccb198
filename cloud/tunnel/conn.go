package tunnel

import (
	"context"
	"crypto/x509"
	"io"
	"net"
	"time"

	"github.com/quic-go/quic-go"
)

// Conn is a child's tunnel as its parent serves it: a QUIC connection
// accepted in the parent's own process (QUICConn), or one that another
// process holds and relays (package shard).
type Conn interface {
	// ALPN is the protocol the child asked for: ALPN or ALPNEnroll.
	ALPN() string
	// PeerCertificates is the child's verified chain, leaf first; empty
	// for an enrolling box.
	PeerCertificates() []*x509.Certificate
	RemoteAddr() net.Addr
	// AcceptStream waits for the child's control stream.
	AcceptStream(ctx context.Context) (Stream, error)
	// Context ends when the connection does, with the reason as its
	// cause.
	Context() context.Context
	CloseWithError(code quic.ApplicationErrorCode, reason string) error
}

// Stream is a child's control stream. Close ends the parent's side of it.
type Stream interface {
	io.ReadWriteCloser
	SetReadDeadline(time.Time) error
}

// QUICConn is a QUIC connection as a Conn.
func QUICConn(c *quic.Conn) Conn { return quicConn{c} }

type quicConn struct{ *quic.Conn }

func (c quicConn) ALPN() string { return c.ConnectionState().TLS.NegotiatedProtocol }

func (c quicConn) PeerCertificates() []*x509.Certificate {
	return c.ConnectionState().TLS.PeerCertificates
}

func (c quicConn) AcceptStream(ctx context.Context) (Stream, error) {
	str, err := c.Conn.AcceptStream(ctx)
	if err != nil {
		return nil, err
	}
	return str, nil
}
