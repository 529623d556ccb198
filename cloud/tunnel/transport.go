package tunnel

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
)

// ALPN protocols; see the package documentation.
const (
	ALPN       = "ote/1"
	ALPNEnroll = "ote-enroll/1"
)

// Application error codes a parent closes a tunnel with.
const (
	CloseNormal   quic.ApplicationErrorCode = 0
	CloseRefused  quic.ApplicationErrorCode = 1 // try again later
	CloseProtocol quic.ApplicationErrorCode = 2 // a frame out of place
	CloseReplaced quic.ApplicationErrorCode = 3 // the child connected again
	CloseRevoked  quic.ApplicationErrorCode = 4
	CloseShutdown quic.ApplicationErrorCode = 5 // the parent is going away
)

// ServerName is the name every parent's certificate carries and every
// child verifies, against the tree's CA: boxes reach their parents by
// addresses (NAT, QEMU's 10.0.2.2) that no certificate could list.
const ServerName = "ote-parent"

// QUICConfig is a parent's: an idle timeout long enough to ride out short
// outages on weak links, datagrams, in which the parent pings its
// children (see ListenConfig.KeepAlive), and QUIC's own keepalives after
// ParentKeepAlive of silence (a listener puts them off by a fifth of its
// period more). A listener pings every child that takes datagrams on a
// slot of its own (pinger), a little more often than the child would ping
// itself (ChildQUICConfig), so that a child's keepalive stays a fallback
// for a parent that has gone quiet; QUIC's keepalive, put off by the ACKs
// of those pings, only pings the children that do not take datagrams. A
// PING is acknowledged after QUIC's ACK delay, for which the receiver
// sets a timer: at a parent of many thousand children, those timers,
// reset every few milliseconds, cost more than the packets (each pass
// over the runtime's timer heap visits every connection's timer).
// Pinging from the parent leaves those timers to each child, with one
// connection, and the parent only takes in ACKs, which set none.
//
// Neither end probes the path's MTU: a tunnel's packets are pings, ACKs
// and control frames, far smaller than the least MTU QUIC allows, and
// each probe is a full-size packet the other end acknowledges. Each
// connection's discovery took four probes from each end: with 20k
// children connecting, turning it off cut the packets by a fifth and
// the CPU the shards and the children spent connecting by 19% and 15%.
func QUICConfig() *quic.Config {
	return &quic.Config{
		HandshakeIdleTimeout:    10 * time.Second,
		MaxIdleTimeout:          60 * time.Second,
		KeepAlivePeriod:         ParentKeepAlive,
		EnableDatagrams:         true,
		DisablePathMTUDiscovery: true,
	}
}

// ParentKeepAlive is how often a parent pings each child by default. It
// is two seconds before a child with the default lostAfter would ping
// itself, so the parent's PING and its ACK arrive first unless the link's
// RTT nears two seconds. Against a child with a shorter lostAfter, QUIC
// pings at half the idle timeout, as the child does, and the ends take
// turns.
const ParentKeepAlive = DefaultLostAfter/2 - 2*time.Second

// DefaultLostAfter is a child's lostAfter (see ChildQUICConfig) unless
// configured otherwise.
const DefaultLostAfter = 30 * time.Second

// ChildQUICConfig is a child's: it takes its parent for lost after
// lostAfter without a packet from it (QUIC's idle timeout, of which the
// smaller of both ends' applies; at most a minute), and sends a keepalive
// when half of that has passed in silence (its parent's pings, every
// ParentKeepAlive by default, usually come first). A lost keepalive costs
// nothing: QUIC's loss recovery sends it again within the other half, at
// growing intervals from a few hundred milliseconds. Half of lostAfter
// also keeps NAT bindings open. A parent that closes or restarts is
// noticed sooner, by its close or by a stateless reset.
func ChildQUICConfig(lostAfter time.Duration) *quic.Config {
	c := QUICConfig()
	if lostAfter > 0 && lostAfter < c.MaxIdleTimeout {
		c.MaxIdleTimeout = lostAfter
	}
	c.KeepAlivePeriod = c.MaxIdleTimeout / 2
	return c
}

// ListenConfig is how a parent's tunnel listens.
type ListenConfig struct {
	// ResetKey makes the stateless resets; it should outlive the
	// process. After a restart, packets of connections the parent no
	// longer knows are answered with a reset that ends them at the child
	// at once.
	ResetKey [32]byte
	// MaxHandshakes bounds the handshakes in progress (default
	// DefaultMaxHandshakes). A connection beyond it is refused at once,
	// before any cryptography, and its child tries again after its
	// backoff: in a storm of reconnects (a parent restarted under many
	// thousand children) the parent's time goes to the handshakes it has
	// begun and to the keepalives of the children already connected,
	// instead of to handshakes that would time out half done.
	MaxHandshakes int
	// KeepAlive is how often the parent pings each child: 0 means
	// ParentKeepAlive, a negative value never (the children's own
	// keepalives then carry their tunnels), as with net.Dialer's
	// KeepAlive. Each child is pinged on a slot of its own, a multiple of
	// PingTick into the period (see pinger); QUIC's keepalive, which
	// pings children that do not take datagrams, comes a fifth of a
	// period later, and at half the idle timeout at the latest.
	KeepAlive time.Duration
	// Shards, if more than 1, makes this listener one of that many that
	// share a UDP port (ShardSockets), usually each in a process of its
	// own: each new connection goes to one of them, and its packets stay
	// there, so that each process holds its share of the children with
	// a heap, and garbage collections, of its own. Shard is this one's
	// number, from 0. Linux only.
	Shards, Shard int
}

const (
	// DefaultMaxHandshakes is ListenConfig.MaxHandshakes by default.
	DefaultMaxHandshakes = 128
	// DefaultReadBuffer is the receive buffer of a parent's socket, in
	// bytes (Linux doubles it for its own bookkeeping): deep enough for
	// the bursts of its children's packets while the process is busy,
	// shallow enough that a packet does not wait longer in it than the
	// sender's probe timeout. A packet that waits longer draws probes
	// that join the queue too. With 20k children on loopback and a 6 s
	// pause of the process holding them, 32 MiB turned the pause into a
	// storm that lasted until the run ended (60k packets a second, 395
	// tunnels lost); 4 MiB was back to its 3k a second within 10 s, and
	// none were lost. A pause of the parent itself passed at either size.
	DefaultReadBuffer = 4 << 20
)

// Listener is a parent's tunnel listener.
type Listener struct {
	tr         *quic.Transport
	ln         *quic.Listener
	handshakes atomic.Int64
	max        int64
	pings      *pinger // nil: the parent does not ping
}

// errBusy refuses a connection beyond ListenConfig.MaxHandshakes.
var errBusy = errors.New("too many handshakes in progress")

// endHandshake is kept in an admitted connection's context: it ends the
// count of its handshake at the accept, unless the handshake failed and
// ended it already.
type endHandshake struct{}

// admit counts a new connection's handshake, or refuses the connection.
// The count drops when the connection is accepted or its handshake fails.
func (l *Listener) admit(ctx context.Context, _ *quic.ClientInfo) (context.Context, error) {
	if l.handshakes.Add(1) > l.max {
		l.handshakes.Add(-1)
		return nil, errBusy
	}
	failed := context.AfterFunc(ctx, func() { l.handshakes.Add(-1) })
	return context.WithValue(ctx, endHandshake{}, failed), nil
}

// Listen binds a parent's tunnel on the UDP address addr. A shard of a
// listener (ListenConfig.Shards) listens with ListenOn instead.
func Listen(addr string, tlsConf *tls.Config, lc ListenConfig) (*Listener, error) {
	if lc.Shards > 1 {
		return nil, fmt.Errorf("shard %d of %d: a shard listens on one of ShardSockets' sockets", lc.Shard, lc.Shards)
	}
	udpAddr, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, err
	}
	udp, err := net.ListenUDP("udp", udpAddr)
	if err != nil {
		return nil, err
	}
	return ListenOn(udp, tlsConf, lc)
}

// ListenOn makes a parent's tunnel listener on a bound socket: for shard
// i of a listener, socket i of ShardSockets. The listener owns the socket
// from then on, and closes it on Close or on an error.
func ListenOn(udp *net.UDPConn, tlsConf *tls.Config, lc ListenConfig) (*Listener, error) {
	if err := checkShard(lc.Shard, lc.Shards); err != nil {
		udp.Close()
		return nil, err
	}
	GrowReadBuffer(udp, DefaultReadBuffer)
	if lc.MaxHandshakes <= 0 {
		lc.MaxHandshakes = DefaultMaxHandshakes
	}
	key := quic.StatelessResetKey(lc.ResetKey)
	l := &Listener{max: int64(lc.MaxHandshakes)}
	l.tr = &quic.Transport{Conn: udp, StatelessResetKey: &key, ConnContext: l.admit}
	if lc.Shards > 1 {
		l.tr.ConnectionIDGenerator = shardIDs{shard: lc.Shard, shards: lc.Shards}
	}
	qc := QUICConfig()
	switch {
	case lc.KeepAlive < 0:
		qc.KeepAlivePeriod = 0
	case lc.KeepAlive > 0:
		qc.KeepAlivePeriod = lc.KeepAlive
	}
	if qc.KeepAlivePeriod > 0 {
		l.pings = newPinger(qc.KeepAlivePeriod)
		qc.KeepAlivePeriod += qc.KeepAlivePeriod / 5
	}
	var err error
	if l.ln, err = l.tr.Listen(tlsConf, qc); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// Accept waits for the next connection whose handshake is done.
func (l *Listener) Accept(ctx context.Context) (*quic.Conn, error) {
	conn, err := l.ln.Accept(ctx)
	if err != nil {
		return nil, err
	}
	// Stopping the count's release on failure means the handshake was
	// still counted: it ends here.
	if stop, ok := conn.Context().Value(endHandshake{}).(func() bool); ok && stop() {
		l.handshakes.Add(-1)
	}
	if l.pings != nil && conn.ConnectionState().SupportsDatagrams.Remote {
		l.pings.ping(conn)
	}
	return conn, nil
}

// Addr is the UDP address the listener is bound to.
func (l *Listener) Addr() net.Addr { return l.ln.Addr() }

// Close closes the listener and its socket (a quic.Transport leaves open
// a socket it was given).
func (l *Listener) Close() error {
	err := l.tr.Close()
	if cerr := l.tr.Conn.Close(); err == nil {
		err = cerr
	}
	return err
}

// ServerCert is a parent's certificate chain, which may change while it
// serves: a level's own certificate, its CA, is renewed.
type ServerCert struct {
	chain atomic.Pointer[tls.Certificate]
}

// Set makes chain the one served from now on.
func (c *ServerCert) Set(chain *tls.Certificate) { c.chain.Store(chain) }

// TLS is ServerTLS, serving the chain last Set.
func (c *ServerCert) TLS(ca *x509.Certificate) *tls.Config {
	conf := ServerTLS(tls.Certificate{}, ca)
	conf.Certificates = nil
	conf.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return c.chain.Load(), nil }
	return conf
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
		// Children keep one long connection and present their
		// certificate on every handshake: a ticket per connection would
		// cost the parent memory and signatures for nothing.
		SessionTicketsDisabled: true,
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
