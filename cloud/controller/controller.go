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
	"maps"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/dynamic"

	"github.com/ote-edge/ote/appliance/backoff"
	"github.com/ote-edge/ote/cloud/enrollment"
	"github.com/ote-edge/ote/cloud/pki"
	"github.com/ote-edge/ote/cloud/token"
	"github.com/ote-edge/ote/cloud/tunnel"
)

// Config configures a Controller.
type Config struct {
	Listen string // UDP address of the QUIC listener, e.g. :7443
	Name   string // this level's name, told to children as their parent
	CA     *pki.CA
	// ResetKey makes the tunnel's stateless resets; keep it across
	// restarts (enrollment.Store.ResetKey).
	ResetKey [32]byte
	// MaxHandshakes bounds the tunnel handshakes in progress; 0 means
	// tunnel.DefaultMaxHandshakes.
	MaxHandshakes int
	// PingChildren is how often the tunnel pings each child
	// (tunnel.ListenConfig.KeepAlive): 0 means the default, a negative
	// value never.
	PingChildren time.Duration
	Tokens       enrollment.Store
	Dynamic      dynamic.Interface
	Log          *slog.Logger
	// Tunnel, when set, is where children's connections come from
	// instead of a listener that Listen binds on Listen: the shards of
	// package shard, which hold them in processes of their own.
	Tunnel Tunnel
	// CertValidity is how long enrolled identities are valid; default 90 days.
	CertValidity time.Duration
	// RenewGrace is how long past expiry a cluster may still renew with
	// proof of its old key; default 30 days.
	RenewGrace time.Duration
}

// Tunnel is where a controller's children connect.
type Tunnel interface {
	// Accept waits for a child's next connection.
	Accept(ctx context.Context) (tunnel.Conn, error)
	Addr() net.Addr
	// SetCertificate is the chain the tunnel serves from then on, for
	// tunnel.ServerName, with the tree's root CA behind it.
	SetCertificate(*tls.Certificate)
	Close() error
}

// Controller serves one level of the tree.
type Controller struct {
	cfg      Config
	ca       atomic.Pointer[pki.CA]
	registry *registry
	ln       Tunnel
	caHash   [32]byte

	sync    *syncer
	statusq *statusQueue // the connected children's status writes

	dirtyKick chan struct{}

	mu         sync.Mutex
	children   map[string]*session          // connected, by cluster name
	levels     map[string]*session          // the connected children that serve children of their own
	sent       map[string]sentSet           // the desired set last sent, by cluster
	claims     map[string]map[string]claim  // by child: the clusters it reports below it
	resetting  map[string]map[string]bool   // by child: clusters reported since its Reset
	reported   map[string]tunnel.ReportMark // by child: its last Status frame applied
	dirty      map[string]bool              // EdgeClusters to bring up to date
	forgetting map[string]bool              // EdgeClusters this level deletes itself
	revoked    map[string]time.Time         // cluster: certificates issued until then are refused
	upParent   string                       // this level's parent, for alternates
	upSiblings []string                     // where the parent's other level children serve
	reportCh   chan struct{}                // closed and replaced when the report up changes
}

// session is a connected child.
type session struct {
	name       string
	conn       tunnel.Conn
	out        *tunnel.Writer
	cert       *x509.Certificate
	serves     string // where a level child serves its own children
	capVersion int
	send       sender
}

// sentSet is a desired set sent to a child: to credit its Ack, and to
// send the next set as a change to it.
type sentSet struct {
	revision int64
	hash     string
	keys     []string          // namespace/name of each deployment that targets the child itself
	parts    map[string]string // namespace/name → PartHash of each deployment
}

func newSentSet(child string, revision int64, hash string, set []tunnel.Deployment) sentSet {
	s := sentSet{revision: revision, hash: hash, parts: make(map[string]string, len(set))}
	for _, dep := range set {
		if slices.Contains(dep.Targets, child) {
			s.keys = append(s.keys, dep.Key())
		}
		s.parts[dep.Key()] = dep.PartHash()
	}
	return s
}

// changeTo is the Desired that turns this set, which the child holds, into
// next: only the deployments added or changed, and the keys of those gone.
func (s sentSet) changeTo(next sentSet, set []tunnel.Deployment, revoked map[string]time.Time) *tunnel.Desired {
	d := &tunnel.Desired{Revision: next.revision, Deployments: []tunnel.Deployment{}, Revoked: revoked, Base: s.revision, BaseHash: s.hash, Hash: next.hash}
	for _, dep := range set {
		if s.parts[dep.Key()] != next.parts[dep.Key()] {
			d.Deployments = append(d.Deployments, dep)
		}
	}
	for key := range s.parts {
		if _, ok := next.parts[key]; !ok {
			d.Removed = append(d.Removed, key)
		}
	}
	slices.Sort(d.Removed)
	return d
}

// statusWorkers is how many status writes of connected children are in
// flight at once.
const statusWorkers = 8

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
	c := &Controller{
		cfg: cfg, caHash: cfg.CA.Hash(),
		registry:   newRegistry(cfg.Dynamic, cfg.Log),
		sync:       newSyncer(cfg.Dynamic, cfg.Log),
		dirtyKick:  make(chan struct{}, 1),
		children:   map[string]*session{},
		levels:     map[string]*session{},
		sent:       map[string]sentSet{},
		claims:     map[string]map[string]claim{},
		resetting:  map[string]map[string]bool{},
		reported:   map[string]tunnel.ReportMark{},
		dirty:      map[string]bool{},
		forgetting: map[string]bool{},
		revoked:    map[string]time.Time{},
		reportCh:   make(chan struct{}),
	}
	c.statusq = newStatusQueue(c.registry.setStatus, cfg.Log)
	c.registry.onChange = c.reportChanged
	c.registry.onDelete = c.deleted
	c.sync.onRecord = c.reportChanged
	c.ln = cfg.Tunnel
	if c.ln == nil {
		ln, err := listenQUIC(cfg)
		if err != nil {
			return nil, err
		}
		c.ln = ln
	}
	if err := c.SetCA(cfg.CA); err != nil {
		c.ln.Close()
		return nil, err
	}
	return c, nil
}

// quicTunnel is a Tunnel on a QUIC listener in this process.
type quicTunnel struct {
	*tunnel.Listener
	cert tunnel.ServerCert
}

func listenQUIC(cfg Config) (*quicTunnel, error) {
	t := &quicTunnel{}
	ln, err := tunnel.Listen(cfg.Listen, t.cert.TLS(cfg.CA.Root), tunnel.ListenConfig{ResetKey: cfg.ResetKey, MaxHandshakes: cfg.MaxHandshakes, KeepAlive: cfg.PingChildren})
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", cfg.Listen, err)
	}
	t.Listener = ln
	return t, nil
}

func (t *quicTunnel) Accept(ctx context.Context) (tunnel.Conn, error) {
	conn, err := t.Listener.Accept(ctx)
	if err != nil {
		return nil, err
	}
	return tunnel.QUICConn(conn), nil
}

func (t *quicTunnel) SetCertificate(cert *tls.Certificate) { t.cert.Set(cert) }

// SetCA makes ca the CA this level signs with: at start, and when a
// level's own certificate (its intermediate CA) is renewed. The tree's
// root stays the same.
func (c *Controller) SetCA(ca *pki.CA) error {
	if ca.Hash() != c.caHash {
		return errors.New("controller: a CA of another tree")
	}
	chain, err := serverChain(ca)
	if err != nil {
		return err
	}
	c.ca.Store(ca)
	c.ln.SetCertificate(&chain)
	return nil
}

// Addr is the bound UDP address.
func (c *Controller) Addr() net.Addr { return c.ln.Addr() }

// serverChain issues the parent's certificate, for ServerName, and
// returns it with the chain to the root behind it: enrolling boxes pin
// the root.
func serverChain(ca *pki.CA) (tls.Certificate, error) {
	certPEM, keyPEM, err := ca.Issue(pki.Request{CommonName: tunnel.ServerName, DNSNames: []string{tunnel.ServerName}, Server: true, Validity: 365 * 24 * time.Hour})
	if err != nil {
		return tls.Certificate{}, err
	}
	pair, err := tls.X509KeyPair(append(certPEM, ca.RootPEM...), keyPEM)
	if err != nil {
		return tls.Certificate{}, err
	}
	return pair, nil
}

// Run accepts connections until ctx ends.
func (c *Controller) Run(ctx context.Context) error {
	for {
		err := c.loadRevoked(ctx)
		if err == nil {
			break
		}
		c.cfg.Log.Warn("read revocations", "err", err)
		if backoff.Sleep(ctx, time.Second) != nil {
			return nil
		}
	}
	var wg, conns sync.WaitGroup
	defer func() {
		c.closeAll() // first: tell the children before the socket goes
		c.ln.Close()
		conns.Wait()
		wg.Wait()
		c.statusq.flush(10 * time.Second) // their Disconnected
	}()
	wg.Go(func() { c.statusq.run(ctx, statusWorkers) })
	wg.Go(func() { c.registry.watch(ctx) })
	wg.Go(func() { c.sync.watch(ctx) })
	changed := c.sync.changes()
	wg.Go(func() { c.kickOnChange(ctx, changed) })
	wg.Go(func() { c.sync.flush(ctx, c.registry, 500*time.Millisecond) })
	wg.Go(func() { c.writeClusters(ctx) })
	select {
	case <-c.registry.synced:
	case <-ctx.Done():
		return nil
	}
	for {
		conn, err := c.ln.Accept(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("accept: %w", err)
		}
		conns.Go(func() {
			switch conn.ALPN() {
			case tunnel.ALPNEnroll:
				c.serveEnroll(ctx, conn)
			case tunnel.ALPN:
				c.serveChild(ctx, conn)
			default:
				conn.CloseWithError(tunnel.CloseProtocol, "unknown protocol")
			}
		})
	}
}

// closeAll tells every child that this level is going away, so that they
// fail over at once instead of waiting for a timeout.
func (c *Controller) closeAll() {
	c.mu.Lock()
	conns := make([]tunnel.Conn, 0, len(c.children))
	for _, s := range c.children {
		conns = append(conns, s.conn)
	}
	c.mu.Unlock()
	for _, conn := range conns {
		conn.CloseWithError(tunnel.CloseShutdown, "parent shutting down")
	}
}

// reportChanged wakes whoever reports this level's subtree up.
func (c *Controller) reportChanged() {
	c.mu.Lock()
	close(c.reportCh)
	c.reportCh = make(chan struct{})
	c.mu.Unlock()
}

// serveEnroll answers one enrollment request.
func (c *Controller) serveEnroll(ctx context.Context, conn tunnel.Conn) {
	defer conn.CloseWithError(tunnel.CloseNormal, "")
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
	if req.Level && !rec.Level {
		return refuse("this token enrolls boxes, not levels: create one with --level")
	}
	ca := c.ca.Load()
	certPEM, _, err := ca.Issue(pki.Request{CommonName: name, Client: true, CA: req.Level, Validity: c.cfg.CertValidity, PublicKey: csr.PublicKey})
	if err != nil {
		return refuse("issue certificate: %v", err)
	}
	cert, _ := pki.ParseCert(certPEM)
	status := map[string]any{"phase": "Pending", "certificateNotAfter": cert.NotAfter.UTC().Format(time.RFC3339), "subtreeSize": 1}
	if err := c.registry.create(ctx, newObject(name, tags, "", false), status); err != nil {
		if apierrors.IsAlreadyExists(err) {
			return refuse("cluster name %q is taken; delete its EdgeCluster first to enroll it again", name)
		}
		return refuse("register %s: %v", name, err)
	}
	c.cfg.Log.Info("enrolled", "cluster", name, "tags", tags, "remote", remote)
	return &tunnel.EnrollResponse{Cluster: name, Cert: certPEM, CA: ca.RootPEM, Tags: tags}
}

// serveChild holds an enrolled child's tunnel. The child may have
// enrolled here or anywhere else in the tree (after a failover): its
// certificate, verified against the tree's root, is its identity.
//
// Its goroutine, one per child, spends the tunnel's life waiting for
// the child's next frame, and the runtime shrinks a stack only while
// well under a quarter of it is in use. So the connect's work, and its
// large frame, is attach's, which has returned by then, and receive
// waits in tunnel.Reader.Wait: with 5k children, their stacks then took
// 24 MB instead of 42 (about 4 KiB each instead of 8).
func (c *Controller) serveChild(ctx context.Context, conn tunnel.Conn) {
	a := c.attach(ctx, conn)
	if a == nil {
		return
	}
	defer c.detach(a.s, a.visitor)
	defer c.stopSending(a.s)
	c.receive(ctx, a)
	a.log.Info("disconnected", "reason", context.Cause(conn.Context()))
}

// attached is a child that attach let in: its session, the reader of its
// control stream, whether it is a visitor, and its log.
type attached struct {
	s       *session
	r       *tunnel.Reader
	visitor bool
	log     *slog.Logger
}

// attach lets a child in: it checks its certificate, reads its Hello,
// registers it, sends it Welcome and starts sending it its desired set.
// It returns nil if the child was refused or went away, with its
// connection closed and any session detached.
func (c *Controller) attach(ctx context.Context, conn tunnel.Conn) *attached {
	peers := conn.PeerCertificates()
	if len(peers) == 0 {
		conn.CloseWithError(tunnel.CloseRefused, "a client certificate is required")
		return nil
	}
	cert := peers[0]
	name := cert.Subject.CommonName
	log := c.cfg.Log.With("cluster", name, "remote", conn.RemoteAddr())
	c.mu.Lock()
	revoked := c.revokedLocked(name, cert)
	c.mu.Unlock()
	if revoked {
		log.Warn("refused: revoked")
		conn.CloseWithError(tunnel.CloseRevoked, "cluster "+name+" was revoked")
		return nil
	}
	hctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	str, err := conn.AcceptStream(hctx)
	cancel()
	if err != nil {
		conn.CloseWithError(tunnel.CloseProtocol, "no control stream")
		return nil
	}
	str.SetReadDeadline(time.Now().Add(10 * time.Second))
	r := tunnel.NewReader(str)
	m, err := r.Read()
	hello, ok := m.(*tunnel.Hello)
	if err != nil || !ok {
		conn.CloseWithError(tunnel.CloseProtocol, "want Hello: "+errOr(err, fmt.Sprintf("got %T", m)))
		return nil
	}
	str.SetReadDeadline(time.Time{})
	// One read serves the registration check and the mark of the desired
	// set the child was last given.
	mark, err := c.registry.desiredMark(ctx, name)
	visitor := false
	if apierrors.IsNotFound(err) {
		if cert.CheckSignatureFrom(c.ca.Load().Cert) == nil {
			// Enrolled here, and its EdgeCluster is gone: deleted.
			log.Warn("refused: not registered (deleted or revoked)")
			conn.CloseWithError(tunnel.CloseRevoked, "cluster "+name+" is not registered (deleted or revoked)")
			return nil
		}
		// Enrolled elsewhere in the tree: a visitor, after a failover.
		visitor = true
		err = c.registry.create(ctx, newObject(name, hello.Tags, "", true), map[string]any{"phase": "Pending", "subtreeSize": 1})
		if apierrors.IsAlreadyExists(err) {
			err = nil
		}
		mark = desiredMark{}
	}
	if err != nil {
		log.Warn("refused: registry", "err", err)
		conn.CloseWithError(tunnel.CloseRefused, "registry unavailable, try again")
		return nil
	}
	if e, ok := c.registry.get(name); ok && e.parent != "" {
		// It was below a child of this level and is now a direct child.
		c.registry.setSpec(ctx, name, map[string]any{"parent": nil})
	}
	capv := min(hello.CapabilityVersion, tunnel.CapabilityVersion)
	s := &session{name: name, conn: conn, out: tunnel.NewWriter(str), cert: cert, serves: hello.Serves, capVersion: capv}
	c.mu.Lock()
	old := c.children[name]
	c.children[name] = s
	delete(c.levels, name)
	if s.serves != "" {
		c.levels[name] = s
	}
	welcome := c.welcomeLocked(name, capv)
	size := c.subtreeSizeLocked(name)
	// What it reported before is reached through it again: a child that
	// resumes its report does not say it twice. Its own size and next hop
	// go with its Connected status below, in the same write.
	dirty := slices.Collect(maps.Keys(c.claims[name]))
	c.mu.Unlock()
	if old != nil {
		old.conn.CloseWithError(tunnel.CloseReplaced, "replaced by a newer connection")
	}
	if err := s.out.Send(welcome); err != nil {
		c.detach(s, visitor)
		return nil
	}
	if s.serves != "" {
		c.welcomeAll() // its siblings gain an alternate
	}
	c.markDirty(dirty...)
	log.Info("connected", "agent", hello.AgentVersion, "visitor", visitor)
	// Written with the first desired mark: one request per connect.
	connected := map[string]any{
		"phase": "Connected", "lastSeen": now(), "agentVersion": hello.AgentVersion, "nextHop": name, "subtreeSize": size,
		"certificateNotAfter": cert.NotAfter.UTC().Format(time.RFC3339),
	}
	c.startSending(s, hello, mark, connected, log)
	return &attached{s: s, r: r, visitor: visitor, log: log}
}

// receive takes an attached child's messages until its control stream
// ends.
func (c *Controller) receive(ctx context.Context, a *attached) {
	s := a.s
	for {
		if a.r.Wait() != nil {
			return
		}
		m, err := a.r.Read()
		if err != nil {
			return
		}
		switch m := m.(type) {
		case *tunnel.Ack:
			if m.Resend {
				c.kick(s, true)
				continue
			}
			c.acked(s.name, m.Revision)
		case *tunnel.Status:
			c.status(ctx, s.name, m, a.log)
		case *tunnel.Renew:
			if err := s.out.Send(c.renew(ctx, s.name, s.cert.IsCA, m, a.log)); err != nil {
				s.conn.CloseWithError(tunnel.CloseProtocol, "write: "+err.Error())
			}
		default:
			s.conn.CloseWithError(tunnel.CloseProtocol, fmt.Sprintf("unexpected %T from a child", m))
		}
	}
}

// desiredFor is a child's desired set: every deployment that targets the
// child or a cluster below it, with those targets, and the revocations;
// and the hash of both.
func (c *Controller) desiredFor(child string) ([]tunnel.Deployment, map[string]time.Time, string) {
	c.mu.Lock()
	members := c.membersLocked(child, c.registry.labels)
	c.mu.Unlock()
	revoked := c.revokedCopy()
	set := c.sync.desired(members)
	return set, revoked, tunnel.DesiredHash(set, revoked)
}

// acked credits a child's acknowledgement of a revision.
func (c *Controller) acked(name string, rev int64) {
	c.statusq.set(name, map[string]any{"ackedRevision": rev, "lastSeen": now()})
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

// status takes a child's report on its subtree. A child speaks only for
// its own subtree: reports about other clusters are dropped.
func (c *Controller) status(ctx context.Context, name string, st *tunnel.Status, log *slog.Logger) {
	if st.Reset || st.Sync || len(st.Clusters) > 0 || len(st.Removed) > 0 {
		c.applyClusters(name, st, log)
	}
	if len(st.Revoked) > 0 {
		c.Revoke(ctx, st.Revoked)
	}
	for _, d := range st.Deployments {
		if d.Cluster != name {
			c.mu.Lock()
			via, _, ok := c.ownerLocked(d.Cluster)
			c.mu.Unlock()
			if !ok || via != name {
				log.Warn("dropped status for a cluster outside the child's subtree", "about", d.Cluster)
				continue
			}
		}
		switch d.Phase {
		case "Delivered", "Received", "Applied", "Failed":
		default:
			log.Warn("dropped status with an unknown phase", "phase", d.Phase)
			continue
		}
		c.sync.record(d.Namespace+"/"+d.Name, d.Cluster, clusterState{Phase: d.Phase, Revision: d.Revision, Message: d.Message})
	}
	if st.Mark.Epoch != 0 {
		c.mu.Lock()
		c.reported[name] = st.Mark
		c.mu.Unlock()
	}
}

func now() string { return time.Now().UTC().Format(time.RFC3339) }

// detach forgets a session and, if it was the cluster's tunnel, marks the
// cluster Disconnected, or Revoked. A visitor's EdgeCluster goes: it
// belongs where the cluster enrolled, which reports it again from there.
func (c *Controller) detach(s *session, visitor bool) {
	c.mu.Lock()
	current := c.children[s.name] == s
	if current {
		delete(c.children, s.name)
		delete(c.levels, s.name)
	}
	revoked := c.revokedLocked(s.name, s.cert)
	c.mu.Unlock()
	s.conn.CloseWithError(tunnel.CloseNormal, "")
	if !current {
		return
	}
	if s.serves != "" {
		c.welcomeAll()
	}
	c.childGone(s.name)
	switch {
	case visitor && !revoked:
		c.forget(s.name)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := c.registry.delete(ctx, s.name); err != nil {
			c.cfg.Log.Warn("forget a visitor", "cluster", s.name, "err", err)
		}
	case revoked:
		c.statusq.set(s.name, map[string]any{"phase": "Revoked"})
	default:
		c.statusq.set(s.name, map[string]any{"phase": "Disconnected"})
	}
}

// deleted handles the deletion of an EdgeCluster: unless this level
// deleted it for a cluster that left, it revokes the cluster.
func (c *Controller) deleted(name string) {
	c.mu.Lock()
	ours := c.forgetting[name]
	delete(c.forgetting, name)
	delete(c.sent, name)
	delete(c.reported, name)
	c.mu.Unlock()
	if ours {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c.Revoke(ctx, map[string]time.Time{name: time.Now()})
}

var errNoName = errors.New("no cluster name: ask for one in enroll.yaml or use a token with --name-prefix")
