package shard

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"

	"github.com/quic-go/quic-go"

	"github.com/ote-edge/ote/cloud/tunnel"
)

// relayed is a child's connection that a shard holds, as the Pool's side
// sees it: a tunnel.Conn whose one stream is the control stream.
type relayed struct {
	*stream
	alpn   string
	peers  []*x509.Certificate
	remote net.Addr
	ctx    context.Context
	cancel context.CancelCauseFunc
	forget func() // takes it off its shard's channel

	accept chan struct{} // holds the stream until the first AcceptStream
}

var _ tunnel.Conn = (*relayed)(nil)

func newRelayed(ch channel, id uint32, o *open) (*relayed, error) {
	r := &relayed{stream: newStream(ch, id), alpn: o.ALPN, accept: make(chan struct{}, 1)}
	r.accept <- struct{}{}
	for _, der := range o.Peers {
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("child certificate: %w", err)
		}
		r.peers = append(r.peers, cert)
	}
	addr, err := net.ResolveUDPAddr("udp", o.Remote)
	if err != nil {
		return nil, fmt.Errorf("child address %q: %w", o.Remote, err)
	}
	r.remote = addr
	r.ctx, r.cancel = context.WithCancelCause(context.Background())
	return r, nil
}

func (r *relayed) ALPN() string                          { return r.alpn }
func (r *relayed) PeerCertificates() []*x509.Certificate { return r.peers }
func (r *relayed) RemoteAddr() net.Addr                  { return r.remote }
func (r *relayed) Context() context.Context              { return r.ctx }

// AcceptStream returns the control stream, which the shard accepted
// before it handed the connection over; a child opens no other.
func (r *relayed) AcceptStream(ctx context.Context) (tunnel.Stream, error) {
	select {
	case <-r.accept:
		return r.stream, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-r.ctx.Done():
		return nil, context.Cause(r.ctx)
	}
}

// ended is the end of the connection at the shard, or of the shard.
func (r *relayed) ended(err error) {
	r.stream.end(err)
	r.cancel(err)
}

// closedAt turns a close frame from the shard into the connection's end.
func closedAt(payload []byte) error {
	_, reason, err := parseClose(payload)
	if err != nil {
		return err
	}
	return errors.New(reason)
}

// CloseWithError has the shard close the connection with code and
// reason.
func (r *relayed) CloseWithError(code quic.ApplicationErrorCode, reason string) error {
	if r.ctx.Err() != nil {
		return nil
	}
	err := &quic.ApplicationError{ErrorCode: code, ErrorMessage: reason}
	r.ended(err)
	r.forget()
	return r.sendClose(uint64(code), reason)
}
