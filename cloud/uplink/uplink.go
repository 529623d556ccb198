// Package uplink is a cluster's side of the tunnel to its parent, the same
// for a box and for a lower level's controller: it enrolls with the token
// from enroll.yaml (pinning the tree CA by the token's fingerprint), keeps
// the identity it gets, holds the tunnel with reconnects and backoff, and
// stores and acknowledges the desired state it receives. Until something
// applies that state it is reported as received.
package uplink

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/ote-edge/ote/appliance/backoff"
	"github.com/ote-edge/ote/appliance/config"
	"github.com/ote-edge/ote/cloud/pki"
	"github.com/ote-edge/ote/cloud/token"
	"github.com/ote-edge/ote/cloud/tunnel"
)

// Identity is what enrollment gives a cluster.
type Identity struct {
	Cluster string            `json:"cluster"`
	Cert    []byte            `json:"cert"` // PEM
	Key     []byte            `json:"key"`  // PEM
	CA      []byte            `json:"ca"`   // PEM of the tree CA
	Server  string            `json:"server"`
	Tags    map[string]string `json:"tags,omitempty"`
	// Alternates are the parents to try when Server is lost, as the
	// parent last told them.
	Alternates []string `json:"alternates,omitempty"`
}

// Phases of the uplink, as reported.
const (
	PhaseNotEnrolled  = "not enrolled"
	PhaseEnrolling    = "enrolling"
	PhaseRefused      = "refused"
	PhaseConnecting   = "connecting"
	PhaseConnected    = "connected"
	PhaseDisconnected = "disconnected"
)

// Report is the uplink's state, for the status page.
type Report struct {
	Phase        string
	Cluster      string
	Tags         map[string]string
	Server       string
	Parent       string
	Alternates   []string
	RTT          time.Duration
	LastError    string
	CertNotAfter time.Time
	Since        time.Time // of the current phase
	Revision     int64     // of desired state held
}

// Store keeps the uplink's records; on a box it is the local state.
type Store interface {
	Identity(ctx context.Context) (Identity, bool, error)
	SaveIdentity(ctx context.Context, id Identity) error
	// Desired returns the desired state held, or nil.
	Desired(ctx context.Context) (*tunnel.Desired, error)
	SaveDesired(ctx context.Context, d *tunnel.Desired) error
	Report(ctx context.Context, r Report) error
}

// Source is what a level reports up: its controller's view of the
// subtree below it, and a channel closed when that changes. A box has
// none: it reports the deployments it holds.
type Source interface {
	Report() (*tunnel.Status, <-chan struct{})
}

// Config configures Run.
type Config struct {
	EnrollFile string
	// Server, when set, is dialled for enrollment instead of the server
	// in enroll.yaml.
	Server       string
	DeviceID     string
	AgentVersion string
	Store        Store
	Log          *slog.Logger
	// Backoff between attempts; default 1s doubling to 30s, ±20%.
	Backoff backoff.Backoff

	// Level enrolls a lower level of the tree, which gets an intermediate
	// CA; Serves is where it serves its own children and Source what it
	// reports of them.
	Level  bool
	Serves string
	Source Source
	// OnIdentity is called with every identity kept (enrolled, renewed).
	OnIdentity func(Identity)
	// OnWelcome is called with each Welcome and the address it came from.
	OnWelcome func(server string, w *tunnel.Welcome)

	// LostAfter is how long the parent may stay silent before the child
	// takes it for lost and fails over (default 30s). A parent that
	// closes the tunnel, or restarts, is noticed sooner: by its close, or
	// by the stateless reset it answers the child's next keepalive with.
	LostAfter time.Duration
	// FailoverAfter bounds how long the child tries one alternate parent
	// after losing its own; default 2s.
	FailoverAfter time.Duration
	// ReturnEvery is how often a child on an alternate looks for its own
	// parent, and goes back when it answers; default 10s.
	ReturnEvery time.Duration
}

// Run keeps the cluster enrolled and connected until ctx ends.
func Run(ctx context.Context, cfg Config) error {
	u := newLink(cfg)
	for ctx.Err() == nil {
		id, ok, err := u.cfg.Store.Identity(ctx)
		switch {
		case err != nil:
			u.report(ctx, Report{Phase: PhaseNotEnrolled, LastError: "local state: " + err.Error()})
		case !ok:
			if u.enroll(ctx) {
				continue // connect at once
			}
			if u.last.Phase == PhaseNotEnrolled {
				// Waiting for someone to drop an enroll.yaml: look often.
				if backoff.Sleep(ctx, enrollPoll) != nil {
					return nil
				}
				continue
			}
		default:
			u.connect(ctx, id)
			if u.away {
				continue // to an alternate at once
			}
		}
		if u.bo.Wait(ctx) != nil {
			break
		}
	}
	return nil
}

// enrollPoll is how often a box without enroll.yaml looks for one.
const enrollPoll = 3 * time.Second

// newLink fills in cfg's defaults.
func newLink(cfg Config) *link {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Backoff.Min == 0 {
		cfg.Backoff = backoff.Backoff{Min: time.Second, Max: 30 * time.Second, Jitter: 0.2}
	}
	if cfg.LostAfter == 0 {
		cfg.LostAfter = tunnel.DefaultLostAfter
	}
	if cfg.FailoverAfter == 0 {
		cfg.FailoverAfter = 2 * time.Second
	}
	if cfg.ReturnEvery == 0 {
		cfg.ReturnEvery = 10 * time.Second
	}
	return &link{cfg: cfg, bo: cfg.Backoff, changed: make(chan struct{})}
}

type link struct {
	cfg  Config
	bo   backoff.Backoff
	last Report
	mu   sync.Mutex
	// changed is closed and replaced when a box's held deployments change.
	changed chan struct{}
	// reports is what was reported to each parent, by server address, to
	// go on from after a reconnect.
	reports map[string]*reportState
	// away says the last tunnel ended because its parent went away: it
	// said so, or fell silent for LostAfter.
	away bool
}

// report records r, keeping Since when the phase stays the same.
func (u *link) report(ctx context.Context, r Report) {
	r.Since = time.Now().UTC()
	if r.Phase == u.last.Phase && !u.last.Since.IsZero() {
		r.Since = u.last.Since
	}
	u.last = r
	if err := u.cfg.Store.Report(ctx, r); err != nil && ctx.Err() == nil {
		u.cfg.Log.Warn("report", "err", err)
	}
}

// enroll tries once to get an identity and reports whether it did.
func (u *link) enroll(ctx context.Context) bool {
	e, err := config.LoadEnroll(u.cfg.EnrollFile)
	if err != nil {
		msg := err.Error()
		if errors.Is(err, config.ErrNoEnroll) {
			msg = "no enroll.yaml on the boot partition"
		}
		u.report(ctx, Report{Phase: PhaseNotEnrolled, LastError: msg})
		return false
	}
	if u.cfg.Server != "" {
		e.Server = u.cfg.Server
	}
	tok, err := token.Parse(e.Token)
	if err != nil {
		u.report(ctx, Report{Phase: PhaseRefused, Server: e.Server, LastError: err.Error()})
		return false
	}
	u.report(ctx, Report{Phase: PhaseEnrolling, Server: e.Server})
	key, csr, err := newKey(e.Name)
	if err != nil {
		u.report(ctx, Report{Phase: PhaseEnrolling, Server: e.Server, LastError: err.Error()})
		return false
	}
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	resp, err := tunnel.Enroll(dctx, e.Server, tok.CAHash, &tunnel.EnrollRequest{
		Token: e.Token, CSR: csr, Name: e.Name, Tags: e.Tags, DeviceID: u.cfg.DeviceID, Level: u.cfg.Level,
	})
	var refused *tunnel.RefusedError
	switch {
	case errors.As(err, &refused):
		u.cfg.Log.Warn("enrollment refused", "server", e.Server, "reason", refused.Reason)
		u.report(ctx, Report{Phase: PhaseRefused, Server: e.Server, LastError: refused.Reason})
		return false
	case err != nil:
		u.report(ctx, Report{Phase: PhaseEnrolling, Server: e.Server, LastError: err.Error()})
		return false
	}
	keyPEM, err := pki.EncodeKey(key)
	if err != nil {
		return false
	}
	id := Identity{Cluster: resp.Cluster, Cert: resp.Cert, Key: keyPEM, CA: resp.CA, Server: e.Server, Tags: resp.Tags}
	if err := u.cfg.Store.SaveIdentity(ctx, id); err != nil {
		u.report(ctx, Report{Phase: PhaseEnrolling, Server: e.Server, LastError: "keep identity: " + err.Error()})
		return false
	}
	u.cfg.Log.Info("enrolled", "cluster", id.Cluster, "server", e.Server)
	u.kept(id)
	u.bo.Reset()
	return true
}

// kept tells the caller about an identity just stored.
func (u *link) kept(id Identity) {
	if u.cfg.OnIdentity != nil {
		u.cfg.OnIdentity(id)
	}
}

// Enroll waits until the cluster has an identity, enrolling with
// enroll.yaml if it has none yet, and returns it; it gives up only when
// ctx ends. A level needs its identity (its CA) before it can serve.
func Enroll(ctx context.Context, cfg Config) (Identity, error) {
	u := newLink(cfg)
	for {
		id, ok, err := u.cfg.Store.Identity(ctx)
		if err == nil && ok {
			return id, nil
		}
		if err != nil {
			u.report(ctx, Report{Phase: PhaseNotEnrolled, LastError: "state: " + err.Error()})
		} else if u.enroll(ctx) {
			continue
		}
		if u.bo.Wait(ctx) != nil {
			return Identity{}, ctx.Err()
		}
	}
}

// connect holds the tunnel to the cluster's parent, or, while that parent
// is lost, to an alternate, until the tunnel ends.
func (u *link) connect(ctx context.Context, id Identity) {
	base := Report{Cluster: id.Cluster, Tags: id.Tags, Server: id.Server, Alternates: id.Alternates}
	fail := func(phase string, err error) {
		r := base
		r.Phase, r.LastError = phase, err.Error()
		u.report(ctx, r)
	}
	pair, err := tls.X509KeyPair(id.Cert, id.Key)
	if err != nil {
		fail(PhaseDisconnected, fmt.Errorf("identity: %w", err))
		return
	}
	ca, err := pki.ParseCert(id.CA)
	if err != nil {
		fail(PhaseDisconnected, fmt.Errorf("tree CA: %w", err))
		return
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		fail(PhaseDisconnected, fmt.Errorf("identity: %w", err))
		return
	}
	base.CertNotAfter = leaf.NotAfter
	if time.Now().After(leaf.NotAfter) {
		// Offline past expiry: the parent renews with proof of the old key.
		if id, err = u.renewExpired(ctx, id); err != nil {
			var refused *tunnel.RefusedError
			phase := PhaseDisconnected
			if errors.As(err, &refused) {
				phase = PhaseRefused
			}
			fail(phase, err)
			return
		}
		u.connect(ctx, id)
		return
	}
	r := base
	r.Phase = PhaseConnecting
	u.report(ctx, r)

	// The cluster's own parent first; the alternates, each briefly, only
	// when it does not answer. A parent that went away is tried last:
	// the child looks for it from the alternate meanwhile (lookHome).
	tlsConf := tunnel.ClientTLS(pair, ca)
	servers := append([]string{id.Server}, id.Alternates...)
	if u.away && len(id.Alternates) > 0 {
		servers = append(slices.Clone(id.Alternates), id.Server)
	}
	u.away = false
	var errs []error
	for _, server := range servers {
		timeout := 20 * time.Second
		if len(servers) > 1 {
			timeout = u.cfg.FailoverAfter
		}
		dctx, cancel := context.WithTimeout(ctx, timeout)
		conn, err := quic.DialAddr(dctx, server, tlsConf, tunnel.ChildQUICConfig(u.cfg.LostAfter))
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("dial %s: %w", server, err))
			continue
		}
		for conn != nil {
			var back *quic.Conn
			id, back = u.hold(ctx, id, conn, server, server != id.Server, tlsConf, base)
			base.Alternates = id.Alternates
			conn, server = back, id.Server // back to its own parent
		}
		return
	}
	fail(PhaseDisconnected, errors.Join(errs...))
}

// hold runs one tunnel to server until it ends. On an alternate it looks
// for the cluster's own parent meanwhile and, when that answers, returns
// the new connection to it. It returns the identity, as renewed.
func (u *link) hold(ctx context.Context, id Identity, conn *quic.Conn, server string, alternate bool, tlsConf *tls.Config, base Report) (Identity, *quic.Conn) {
	defer func() {
		u.away = parentAway(conn)
		conn.CloseWithError(0, "")
	}()
	fail := func(phase string, err error) {
		r := base
		r.Phase, r.LastError = phase, err.Error()
		u.report(ctx, r)
	}
	leaf, _ := pki.ParseCert(id.Cert)
	held, err := u.cfg.Store.Desired(ctx)
	if err != nil {
		fail(PhaseDisconnected, err)
		return id, nil
	}
	hello := &tunnel.Hello{CapabilityVersion: tunnel.CapabilityVersion, AgentVersion: u.cfg.AgentVersion, Tags: id.Tags, Serves: u.cfg.Serves}
	if held != nil {
		base.Revision = held.Revision
		hello.Revision, hello.Hash = held.Revision, tunnel.DesiredHash(held.Deployments, held.Revoked)
	}
	dctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	str, err := conn.OpenStreamSync(dctx)
	if err == nil {
		err = tunnel.WriteFrame(str, hello)
	}
	var welcome *tunnel.Welcome
	var frames *tunnel.Reader
	if err == nil {
		frames = tunnel.NewReader(str)
		var m any
		if m, err = frames.Read(); err == nil {
			var ok bool
			if welcome, ok = m.(*tunnel.Welcome); !ok {
				err = fmt.Errorf("want Welcome, got %T", m)
			}
		}
	}
	cancel()
	if err != nil {
		fail(PhaseDisconnected, fmt.Errorf("handshake with %s: %w", server, closeReason(conn, err)))
		return id, nil
	}
	out := tunnel.NewWriter(str)
	welcomed := func(w *tunnel.Welcome) {
		base.Parent = w.Parent
		if !alternate && !slices.Equal(w.Alternates, id.Alternates) {
			id.Alternates = w.Alternates
			base.Alternates = w.Alternates
			if err := u.cfg.Store.SaveIdentity(ctx, id); err != nil {
				u.cfg.Log.Warn("keep alternates", "err", err)
			}
		}
		if u.cfg.OnWelcome != nil {
			u.cfg.OnWelcome(server, w)
		}
	}
	welcomed(welcome)
	connected := func() {
		r := base
		r.Phase, r.RTT = PhaseConnected, conn.ConnectionStats().SmoothedRTT
		if alternate {
			r.LastError = "on alternate parent " + server + "; its own parent " + id.Server + " is lost"
		}
		u.report(ctx, r)
	}
	connected()
	u.bo.Reset()
	u.cfg.Log.Info("connected", "parent", welcome.Parent, "server", server, "alternate", alternate)

	// Frames from the parent come in on their own goroutine; the subtree
	// report goes up on another; RTT is refreshed on a tick.
	type frame struct {
		m   any
		err error
	}
	in := make(chan frame)
	go func() {
		for {
			m, err := frames.Read()
			select {
			case in <- frame{m, err}:
			case <-conn.Context().Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	sctx, stopReports := context.WithCancel(conn.Context())
	reporting := make(chan struct{})
	go func() {
		defer close(reporting)
		u.reportUp(sctx, conn, out, id.Cluster, u.reportTo(server), welcome)
	}()
	defer func() {
		// The next tunnel to this parent goes on from this report.
		stopReports()
		conn.CloseWithError(0, "")
		<-reporting
	}()
	back := make(chan *quic.Conn, 1)
	if alternate {
		go u.lookHome(sctx, id.Server, tlsConf, back)
	}
	tick := time.NewTicker(30 * time.Second) // RTT; spare the SD card
	defer tick.Stop()
	renewal := time.NewTimer(time.Until(renewAt(leaf)))
	defer renewal.Stop()
	if welcome.CapabilityVersion < 2 {
		renewal.Stop() // the parent cannot renew
	}
	var pending *ecdsa.PrivateKey // the key of a Renew in flight
	for {
		select {
		case <-ctx.Done():
			return id, nil
		case <-conn.Context().Done():
			fail(PhaseDisconnected, closeReason(conn, context.Cause(conn.Context())))
			return id, nil
		case c := <-back:
			u.cfg.Log.Info("own parent is back; returning", "server", id.Server)
			conn.CloseWithError(0, "returning to its own parent")
			return id, c
		case <-tick.C:
			connected()
		case <-renewal.C:
			key, csr, err := newKey(id.Cluster)
			if err == nil {
				err = out.Send(&tunnel.Renew{CSR: csr})
			}
			if err != nil {
				fail(PhaseDisconnected, closeReason(conn, err))
				return id, nil
			}
			pending = key
			renewal.Reset(time.Minute) // again, unless answered
		case f := <-in:
			if f.err != nil {
				fail(PhaseDisconnected, closeReason(conn, f.err))
				return id, nil
			}
			switch m := f.m.(type) {
			case *tunnel.Renewed:
				if pending == nil {
					continue
				}
				next, err := u.renewed(ctx, id, pending, m)
				if err != nil {
					rep := base
					rep.Phase, rep.LastError = PhaseConnected, "renewal: "+err.Error()
					u.report(ctx, rep)
					continue
				}
				id, pending = next, nil
				leaf, _ = pki.ParseCert(id.Cert)
				base.CertNotAfter = leaf.NotAfter
				renewal.Reset(time.Until(renewAt(leaf)))
				u.cfg.Log.Info("certificate renewed", "notAfter", leaf.NotAfter)
				connected()
			case *tunnel.Welcome:
				welcomed(m)
				connected()
			case *tunnel.Desired:
				whole, err := m.Apply(held)
				if err != nil {
					// Not the set this change was made for: ask for all of it.
					u.cfg.Log.Warn("desired state change did not apply; asking for the whole set", "revision", m.Revision, "err", err)
					if err := out.Send(&tunnel.Ack{Revision: base.Revision, Resend: true}); err != nil {
						fail(PhaseDisconnected, closeReason(conn, err))
						return id, nil
					}
					continue
				}
				if err := u.cfg.Store.SaveDesired(ctx, whole); err != nil {
					fail(PhaseDisconnected, fmt.Errorf("keep desired state: %w", err))
					return id, nil
				}
				held = whole
				base.Revision = m.Revision
				if err := out.Send(&tunnel.Ack{Revision: m.Revision}); err != nil {
					fail(PhaseDisconnected, closeReason(conn, err))
					return id, nil
				}
				u.heldChanged()
				connected()
			}
		}
	}
}

// lookHome dials the cluster's own parent every ReturnEvery and hands
// over the first connection that it answers.
func (u *link) lookHome(ctx context.Context, server string, tlsConf *tls.Config, back chan<- *quic.Conn) {
	for backoff.Sleep(ctx, u.cfg.ReturnEvery) == nil {
		dctx, cancel := context.WithTimeout(ctx, u.cfg.ReturnEvery)
		conn, err := quic.DialAddr(dctx, server, tlsConf, tunnel.ChildQUICConfig(u.cfg.LostAfter))
		cancel()
		if err == nil {
			back <- conn
			return
		}
	}
}

func (u *link) heldChanged() {
	u.mu.Lock()
	close(u.changed)
	u.changed = make(chan struct{})
	u.mu.Unlock()
}

// snapshot is what the cluster reports up now: its Source's report, or,
// for a box, that it holds (has received) each deployment it was given.
func (u *link) snapshot(ctx context.Context, self string) (*tunnel.Status, <-chan struct{}, error) {
	if u.cfg.Source != nil {
		st, ch := u.cfg.Source.Report()
		return st, ch, nil
	}
	u.mu.Lock()
	ch := u.changed
	u.mu.Unlock()
	held, err := u.cfg.Store.Desired(ctx)
	if err != nil {
		return nil, ch, err
	}
	st := &tunnel.Status{}
	if held != nil {
		for _, dep := range held.Deployments {
			if slices.Contains(dep.Targets, self) {
				st.Deployments = append(st.Deployments, tunnel.DeploymentStatus{
					Namespace: dep.Namespace, Name: dep.Name, Cluster: self, Revision: held.Revision, Phase: "Received",
				})
			}
		}
	}
	return st, ch, nil
}

// reportTo is the record of what was reported to the parent at server.
func (u *link) reportTo(server string) *reportState {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.reports == nil {
		u.reports = map[string]*reportState{}
	}
	rs := u.reports[server]
	if rs == nil {
		rs = &reportState{}
		u.reports[server] = rs
	}
	return rs
}

// reportUp sends the parent the subtree report, then its changes, until
// the tunnel ends. After a reconnect to a parent that applied every frame
// sent to it before (Welcome.Report), only the changes since go; else the
// whole report again.
func (u *link) reportUp(ctx context.Context, conn *quic.Conn, out *tunnel.Writer, self string, rs *reportState, welcome *tunnel.Welcome) {
	if welcome.CapabilityVersion < 4 || !rs.resumes(welcome.Report) {
		rs.restart()
	}
	for {
		st, changed, err := u.snapshot(ctx, self)
		if err == nil {
			for _, f := range rs.diff.frames(st) {
				f.Mark = tunnel.ReportMark{Epoch: rs.epoch, Seq: rs.seq + 1}
				if err := out.Send(f); err != nil {
					rs.broken = true // the diff is ahead of what went
					conn.CloseWithError(0, "")
					return
				}
				rs.seq++
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
		// Let a burst of changes settle into one report.
		if backoff.Sleep(ctx, 100*time.Millisecond) != nil {
			return
		}
	}
}

// parentAway says whether a tunnel ended because its parent went away:
// it closed it saying so, or fell silent for the idle timeout. A parent
// that restarted (a stateless reset) is back already.
func parentAway(conn *quic.Conn) bool {
	select {
	case <-conn.Context().Done():
	default:
		return false
	}
	cause := context.Cause(conn.Context())
	var app *quic.ApplicationError
	var idle *quic.IdleTimeoutError
	return (errors.As(cause, &app) && app.Remote && app.ErrorCode == tunnel.CloseShutdown) || errors.As(cause, &idle)
}

// closeReason prefers the parent's reason for closing the connection.
func closeReason(conn *quic.Conn, err error) error {
	var app *quic.ApplicationError
	if cause := context.Cause(conn.Context()); errors.As(cause, &app) && app.ErrorMessage != "" {
		return fmt.Errorf("parent closed the tunnel: %s", app.ErrorMessage)
	}
	return err
}

// renewAt is when to renew a certificate: at two thirds of its life, with
// ±5% jitter so that a fleet enrolled together does not renew together.
func renewAt(c *x509.Certificate) time.Time {
	life := c.NotAfter.Sub(c.NotBefore)
	jitter := time.Duration((mrand.Float64()*2 - 1) * 0.05 * float64(life))
	return c.NotBefore.Add(life*2/3 + jitter)
}

// newKey makes a key and a CSR for it.
func newKey(cluster string) (*ecdsa.PrivateKey, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cluster}}, key)
	return key, csr, err
}

// renewed keeps the certificate of a Renewed answer with its key.
func (u *link) renewed(ctx context.Context, id Identity, key *ecdsa.PrivateKey, r *tunnel.Renewed) (Identity, error) {
	if r.Error != "" {
		return id, errors.New(r.Error)
	}
	keyPEM, err := pki.EncodeKey(key)
	if err != nil {
		return id, err
	}
	if _, err := tls.X509KeyPair(r.Cert, keyPEM); err != nil {
		return id, fmt.Errorf("renewed certificate: %w", err)
	}
	id.Cert, id.Key = r.Cert, keyPEM
	if err := u.cfg.Store.SaveIdentity(ctx, id); err != nil {
		return id, fmt.Errorf("keep identity: %w", err)
	}
	u.kept(id)
	return id, nil
}

// renewExpired asks the parent for a new certificate after the old one
// expired, proving with a signature that it still holds the old key.
func (u *link) renewExpired(ctx context.Context, id Identity) (Identity, error) {
	oldKey, err := pki.ParseKey(id.Key)
	if err != nil {
		return id, err
	}
	ca, err := pki.ParseCert(id.CA)
	if err != nil {
		return id, err
	}
	key, csr, err := newKey(id.Cluster)
	if err != nil {
		return id, err
	}
	sum := sha256.Sum256(csr)
	proof, err := oldKey.Sign(rand.Reader, sum[:], crypto.SHA256)
	if err != nil {
		return id, err
	}
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	resp, err := tunnel.Enroll(dctx, id.Server, pki.Hash(ca), &tunnel.EnrollRequest{OldCert: id.Cert, Proof: proof, CSR: csr})
	if err != nil {
		return id, err
	}
	return u.renewed(ctx, id, key, &tunnel.Renewed{Cert: resp.Cert})
}
