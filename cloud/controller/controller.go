// Package controller is the cluster controller of one level of the tree:
// it enrolls children, holds their tunnels, and keeps their EdgeCluster
// objects true (phase, last seen, agent version, certificate expiry).
package controller

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/quic-go/quic-go"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"

	"github.com/ote-edge/ote/appliance/backoff"
	"github.com/ote-edge/ote/cloud/crds"
	"github.com/ote-edge/ote/cloud/enrollment"
	"github.com/ote-edge/ote/cloud/pki"
	"github.com/ote-edge/ote/cloud/token"
	"github.com/ote-edge/ote/cloud/tunnel"
)

// Config configures a Controller.
type Config struct {
	Listen  string // UDP address of the QUIC listener, e.g. :7443
	Name    string // this level's name, told to children as their parent
	CA      *pki.CA
	Tokens  enrollment.Store
	Dynamic dynamic.Interface
	Log     *slog.Logger
	// CertValidity is how long enrolled identities are valid; default 90 days.
	CertValidity time.Duration
	// RenewGrace is how long past expiry a cluster may still renew with
	// proof of its old key; default 30 days.
	RenewGrace time.Duration
}

// Controller serves one level of the tree.
type Controller struct {
	cfg      Config
	registry *registry
	ln       *quic.Listener
	caHash   [32]byte

	sync *syncer

	mu    sync.Mutex
	conns map[string]*quic.Conn // by cluster name
	sent  map[string]sentSet    // the desired set last sent, by cluster
}

// sentSet is a desired set sent to a child, to credit its Ack.
type sentSet struct {
	revision int64
	keys     []string // namespace/name of each deployment
}

// ErrCodes of QUIC application closes.
const (
	codeNormal   quic.ApplicationErrorCode = 0
	codeRefused  quic.ApplicationErrorCode = 1
	codeProtocol quic.ApplicationErrorCode = 2
	codeReplaced quic.ApplicationErrorCode = 3
	codeRevoked  quic.ApplicationErrorCode = 4
)

// Listen creates the Controller and binds its UDP port; Run serves.
func Listen(cfg Config) (*Controller, error) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.CertValidity == 0 {
		cfg.CertValidity = 90 * 24 * time.Hour
	}
	if cfg.RenewGrace == 0 {
		cfg.RenewGrace = 30 * 24 * time.Hour
	}
	chain, err := serverChain(cfg.CA)
	if err != nil {
		return nil, err
	}
	ln, err := quic.ListenAddr(cfg.Listen, tunnel.ServerTLS(chain, cfg.CA.Cert), tunnel.QUICConfig())
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", cfg.Listen, err)
	}
	return &Controller{
		cfg: cfg, ln: ln, caHash: cfg.CA.Hash(),
		registry: &registry{client: cfg.Dynamic.Resource(crds.EdgeClusters)},
		sync:     newSyncer(cfg.Dynamic, cfg.Log),
		conns:    map[string]*quic.Conn{},
		sent:     map[string]sentSet{},
	}, nil
}

// Addr is the bound UDP address.
func (c *Controller) Addr() net.Addr { return c.ln.Addr() }

// serverChain issues the parent's certificate, for ServerName, and
// returns it with the CA behind it: enrolling boxes pin the CA.
func serverChain(ca *pki.CA) (tls.Certificate, error) {
	certPEM, keyPEM, err := ca.Issue(pki.Request{CommonName: tunnel.ServerName, DNSNames: []string{tunnel.ServerName}, Server: true, Validity: 365 * 24 * time.Hour})
	if err != nil {
		return tls.Certificate{}, err
	}
	pair, err := tls.X509KeyPair(append(certPEM, ca.CertPEM...), keyPEM)
	if err != nil {
		return tls.Certificate{}, err
	}
	return pair, nil
}

// Run accepts connections until ctx ends.
func (c *Controller) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	defer c.ln.Close()
	wg.Go(func() { c.watchRemovals(ctx) })
	wg.Go(func() { c.sync.watch(ctx) })
	wg.Go(func() { c.sync.flush(ctx, c.registry, 500*time.Millisecond) })
	for {
		conn, err := c.ln.Accept(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("accept: %w", err)
		}
		wg.Go(func() {
			switch conn.ConnectionState().TLS.NegotiatedProtocol {
			case tunnel.ALPNEnroll:
				c.serveEnroll(ctx, conn)
			case tunnel.ALPN:
				c.serveChild(ctx, conn)
			default:
				conn.CloseWithError(codeProtocol, "unknown protocol")
			}
		})
	}
}

// serveEnroll answers one enrollment request.
func (c *Controller) serveEnroll(ctx context.Context, conn *quic.Conn) {
	defer conn.CloseWithError(codeNormal, "")
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	str, err := conn.AcceptStream(ctx)
	if err != nil {
		return
	}
	str.SetReadDeadline(time.Now().Add(10 * time.Second))
	m, err := tunnel.NewReader(str).Read()
	var resp *tunnel.EnrollResponse
	if req, ok := m.(*tunnel.EnrollRequest); err == nil && ok {
		resp = c.enroll(ctx, req, conn.RemoteAddr())
	} else {
		resp = &tunnel.EnrollResponse{Error: fmt.Sprintf("bad enrollment request: %v", errOr(err, "not an EnrollRequest"))}
	}
	if err := tunnel.WriteFrame(str, resp); err != nil {
		c.cfg.Log.Warn("enroll: answer", "remote", conn.RemoteAddr(), "err", err)
	}
	str.Close()
	// Let the answer reach the box before the connection closes.
	select {
	case <-conn.Context().Done():
	case <-time.After(2 * time.Second):
	}
}

func errOr(err error, s string) string {
	if err != nil {
		return err.Error()
	}
	return s
}

func (c *Controller) enroll(ctx context.Context, req *tunnel.EnrollRequest, remote net.Addr) *tunnel.EnrollResponse {
	refuse := func(format string, args ...any) *tunnel.EnrollResponse {
		msg := fmt.Sprintf(format, args...)
		c.cfg.Log.Warn("enrollment refused", "remote", remote, "reason", msg)
		return &tunnel.EnrollResponse{Error: msg}
	}
	if len(req.OldCert) > 0 {
		return c.renewExpired(ctx, req, refuse)
	}
	tok, err := token.Parse(req.Token)
	if err != nil {
		return refuse("%v", err)
	}
	rec, err := c.cfg.Tokens.Redeem(ctx, tok, c.caHash, time.Now())
	if err != nil {
		return refuse("%v", err)
	}
	csr, err := x509.ParseCertificateRequest(req.CSR)
	if err == nil {
		err = csr.CheckSignature()
	}
	if err != nil {
		return refuse("bad certificate request: %v", err)
	}
	name, err := clusterName(req, rec)
	if err != nil {
		return refuse("%v", err)
	}
	tags := map[string]string{}
	for k, v := range req.Tags {
		tags[k] = v
	}
	for k, v := range rec.Tags { // the operator's tags win
		tags[k] = v
	}
	certPEM, _, err := c.cfg.CA.Issue(pki.Request{CommonName: name, Client: true, Validity: c.cfg.CertValidity, PublicKey: csr.PublicKey})
	if err != nil {
		return refuse("issue certificate: %v", err)
	}
	cert, _ := pki.ParseCert(certPEM)
	if err := c.registry.create(ctx, name, tags, cert.NotAfter); err != nil {
		if apierrors.IsAlreadyExists(err) {
			return refuse("cluster name %q is taken; delete its EdgeCluster first to enroll it again", name)
		}
		return refuse("register %s: %v", name, err)
	}
	c.cfg.Log.Info("enrolled", "cluster", name, "tags", tags, "remote", remote)
	return &tunnel.EnrollResponse{Cluster: name, Cert: certPEM, CA: c.cfg.CA.CertPEM, Tags: tags}
}

// serveChild holds an enrolled child's tunnel.
func (c *Controller) serveChild(ctx context.Context, conn *quic.Conn) {
	peers := conn.ConnectionState().TLS.PeerCertificates
	if len(peers) == 0 {
		conn.CloseWithError(codeRefused, "a client certificate is required")
		return
	}
	name := peers[0].Subject.CommonName
	log := c.cfg.Log.With("cluster", name, "remote", conn.RemoteAddr())
	// One read serves the registration check, the tags and the mark of
	// the desired set the child was last given.
	mark, err := c.registry.desiredMark(ctx, name)
	if err != nil {
		log.Warn("refused: not registered (deleted or revoked)", "err", err)
		conn.CloseWithError(codeRevoked, "cluster "+name+" is not registered (deleted or revoked)")
		return
	}
	hctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	str, err := conn.AcceptStream(hctx)
	cancel()
	if err != nil {
		conn.CloseWithError(codeProtocol, "no control stream")
		return
	}
	str.SetReadDeadline(time.Now().Add(10 * time.Second))
	r := tunnel.NewReader(str)
	m, err := r.Read()
	hello, ok := m.(*tunnel.Hello)
	if err != nil || !ok {
		conn.CloseWithError(codeProtocol, "want Hello: "+errOr(err, fmt.Sprintf("got %T", m)))
		return
	}
	str.SetReadDeadline(time.Time{})
	out := &writer{str: str}
	if err := out.send(&tunnel.Welcome{CapabilityVersion: min(hello.CapabilityVersion, tunnel.CapabilityVersion), Cluster: name, Parent: c.cfg.Name}); err != nil {
		return
	}
	c.attach(name, conn)
	defer c.detach(name, conn)
	log.Info("connected", "agent", hello.AgentVersion)
	// Written with the first desired mark: one request per connect.
	connected := map[string]any{
		"phase": "Connected", "lastSeen": now(), "agentVersion": hello.AgentVersion,
		"certificateNotAfter": peers[0].NotAfter.UTC().Format(time.RFC3339), "subtreeSize": 1,
	}

	sendCtx, stopSend := context.WithCancel(conn.Context())
	var sender sync.WaitGroup
	sender.Go(func() { c.sendDesired(sendCtx, out, name, hello.Revision, mark, connected, log) })
	defer func() {
		stopSend()
		sender.Wait()
	}()
	for {
		m, err := r.Read()
		if err != nil {
			break
		}
		switch m := m.(type) {
		case *tunnel.Ack:
			c.acked(ctx, name, m.Revision)
		case *tunnel.Status:
			c.status(name, m, log)
		case *tunnel.Renew:
			if err := out.send(c.renew(ctx, name, m, log)); err != nil {
				conn.CloseWithError(codeProtocol, "write: "+err.Error())
			}
		default:
			conn.CloseWithError(codeProtocol, fmt.Sprintf("unexpected %T from a child", m))
		}
	}
	log.Info("disconnected", "reason", context.Cause(conn.Context()))
}

// sendDesired sends the child its desired set whenever the set's revision
// differs from the one the child holds. The revision, kept in the
// EdgeCluster's status, changes only when the set's content does: a
// reconnecting child that holds the current revision is sent nothing.
// sendDesired sends the child its desired set whenever the set's revision
// differs from the one the child holds. The revision, kept in the
// EdgeCluster's status, changes only when the set's content does: a
// reconnecting child that holds the current revision is sent nothing.
// mark was read at connect; this controller is its only writer, so it is
// kept in memory from then on. first is written with the first mark.
func (c *Controller) sendDesired(ctx context.Context, out *writer, name string, held int64, mark desiredMark, first map[string]any, log *slog.Logger) {
	pending := first // status fields still to write
	fresh := true    // mark.tags was just read
	for ctx.Err() == nil {
		if !fresh {
			if tags, err := c.registry.tags(ctx, name); err == nil {
				mark.tags = tags
			}
		}
		fresh = false
		set, hash, changed := c.sync.desired(name, mark.tags)
		next := mark
		if hash != mark.hash {
			next = desiredMark{tags: mark.tags, revision: mark.revision + 1, hash: hash}
			if pending == nil {
				pending = map[string]any{}
			}
			pending["desiredRevision"], pending["desiredHash"] = next.revision, hash
		}
		if pending != nil {
			if err := c.registry.setStatus(ctx, name, pending); err != nil {
				log.Warn("status", "err", err)
				backoff.Sleep(ctx, time.Second)
				continue
			}
			pending = nil
		}
		mark = next
		if mark.revision != held {
			if err := out.send(&tunnel.Desired{Revision: mark.revision, Deployments: set}); err != nil {
				return
			}
			keys := make([]string, len(set))
			for i, d := range set {
				keys[i] = d.Namespace + "/" + d.Name
			}
			c.mu.Lock()
			c.sent[name] = sentSet{revision: mark.revision, keys: keys}
			c.mu.Unlock()
			held = mark.revision
		}
		// Deployments notify; tag changes on the EdgeCluster are polled.
		select {
		case <-ctx.Done():
		case <-changed:
		case <-time.After(10 * time.Second):
		}
	}
}

// acked credits a child's acknowledgement of a revision.
func (c *Controller) acked(ctx context.Context, name string, rev int64) {
	c.registry.setStatus(ctx, name, map[string]any{"ackedRevision": rev, "lastSeen": now()})
	c.mu.Lock()
	sent := c.sent[name]
	c.mu.Unlock()
	if sent.revision != rev {
		return
	}
	for _, key := range sent.keys {
		c.sync.record(key, name, clusterState{Phase: "Delivered", Revision: rev})
	}
}

// status takes a child's report on deployments. A child speaks only for
// its own subtree; reports about other clusters are dropped.
func (c *Controller) status(name string, st *tunnel.Status, log *slog.Logger) {
	for _, d := range st.Deployments {
		if d.Cluster != name {
			log.Warn("dropped status for a cluster outside the child's subtree", "about", d.Cluster)
			continue
		}
		switch d.Phase {
		case "Received", "Applied", "Failed":
		default:
			log.Warn("dropped status with an unknown phase", "phase", d.Phase)
			continue
		}
		c.sync.record(d.Namespace+"/"+d.Name, name, clusterState{Phase: d.Phase, Revision: d.Revision, Message: d.Message})
	}
}

func now() string { return time.Now().UTC().Format(time.RFC3339) }

// attach makes conn the cluster's tunnel, closing an older one.
func (c *Controller) attach(name string, conn *quic.Conn) {
	c.mu.Lock()
	old := c.conns[name]
	c.conns[name] = conn
	c.mu.Unlock()
	if old != nil {
		old.CloseWithError(codeReplaced, "replaced by a newer connection")
	}
}

// detach forgets conn and, if it was the cluster's tunnel and the cluster
// still exists, marks it Disconnected.
func (c *Controller) detach(name string, conn *quic.Conn) {
	c.mu.Lock()
	current := c.conns[name] == conn
	if current {
		delete(c.conns, name)
	}
	c.mu.Unlock()
	conn.CloseWithError(codeNormal, "")
	if current {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := c.registry.setStatus(ctx, name, map[string]any{"phase": "Disconnected"}); err != nil && !apierrors.IsNotFound(err) {
			c.cfg.Log.Warn("status", "cluster", name, "err", err)
		}
	}
}

// watchRemovals closes the tunnel of every cluster whose EdgeCluster is
// deleted: deletion revokes.
func (c *Controller) watchRemovals(ctx context.Context) {
	for ctx.Err() == nil {
		w, err := c.registry.client.Watch(ctx, metav1.ListOptions{})
		if err != nil {
			c.cfg.Log.Warn("watch EdgeClusters", "err", err)
			backoff.Sleep(ctx, time.Second)
			continue
		}
		for ev := range w.ResultChan() {
			if ev.Type != watch.Deleted {
				continue
			}
			if obj, ok := ev.Object.(interface{ GetName() string }); ok {
				c.revoke(obj.GetName())
			}
		}
		w.Stop()
	}
}

func (c *Controller) revoke(name string) {
	c.mu.Lock()
	conn := c.conns[name]
	delete(c.conns, name)
	c.mu.Unlock()
	if conn != nil {
		c.cfg.Log.Info("revoked: closing tunnel", "cluster", name)
		conn.CloseWithError(codeRevoked, "cluster "+name+" was deleted")
	}
}

var errNoName = errors.New("no cluster name: ask for one in enroll.yaml or use a token with --name-prefix")
