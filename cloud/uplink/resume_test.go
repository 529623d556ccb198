package uplink

import (
	"context"
	"crypto/tls"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/ote-edge/ote/appliance/backoff"
	"github.com/ote-edge/ote/cloud/pki"
	"github.com/ote-edge/ote/cloud/tunnel"
)

// memStore keeps the uplink's records in memory.
type memStore struct {
	mu      sync.Mutex
	id      Identity
	desired *tunnel.Desired
}

func (m *memStore) Identity(context.Context) (Identity, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.id, true, nil
}

func (m *memStore) SaveIdentity(_ context.Context, id Identity) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.id = id
	return nil
}

func (m *memStore) Desired(context.Context) (*tunnel.Desired, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.desired, nil
}

func (m *memStore) SaveDesired(_ context.Context, d *tunnel.Desired) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.desired = d
	return nil
}

func (m *memStore) Report(context.Context, Report) error { return nil }

// parentSession is one tunnel a test parent holds: the frames the child
// sent on it, read in order.
type parentSession struct {
	conn   *quic.Conn
	out    *tunnel.Writer
	frames <-chan any
}

// testParent is a parent that accepts the child's tunnels and answers
// Hello with a Welcome carrying the given report mark.
func testParent(t *testing.T) (addr string, ca *pki.CA, sessions <-chan func(tunnel.ReportMark) *parentSession) {
	t.Helper()
	ca, err := pki.NewCA("test tree")
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := ca.Issue(pki.Request{CommonName: tunnel.ServerName, DNSNames: []string{tunnel.ServerName}, Server: true, Validity: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(append(certPEM, ca.CertPEM...), keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tunnel.Listen("127.0.0.1:0", tunnel.ServerTLS(pair, ca.Cert), tunnel.ListenConfig{ResetKey: [32]byte{7}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ch := make(chan func(tunnel.ReportMark) *parentSession)
	go func() {
		for {
			conn, err := ln.Accept(context.Background())
			if err != nil {
				return
			}
			ch <- func(mark tunnel.ReportMark) *parentSession {
				str, err := conn.AcceptStream(context.Background())
				if err != nil {
					t.Errorf("accept stream: %v", err)
					return nil
				}
				r := tunnel.NewReader(str)
				if m, err := r.Read(); err != nil {
					t.Errorf("read Hello: %v, %T", err, m)
					return nil
				}
				out := tunnel.NewWriter(str)
				out.Send(&tunnel.Welcome{CapabilityVersion: tunnel.CapabilityVersion, Cluster: "box-1", Parent: "test", Report: mark})
				frames := make(chan any, 16)
				go func() {
					defer close(frames)
					for {
						m, err := r.Read()
						if err != nil {
							return
						}
						frames <- m
					}
				}()
				return &parentSession{conn: conn, out: out, frames: frames}
			}
		}
	}()
	return ln.Addr().String(), ca, ch
}

// nextStatus returns the next Status the child sends, skipping Acks.
func (p *parentSession) nextStatus(t *testing.T) *tunnel.Status {
	t.Helper()
	for {
		select {
		case m, ok := <-p.frames:
			if !ok {
				t.Fatal("the tunnel ended before a Status")
			}
			if st, ok := m.(*tunnel.Status); ok {
				return st
			}
		case <-time.After(20 * time.Second):
			t.Fatal("no Status within 20s")
		}
	}
}

// quiet checks that the child sends no Status for a while.
func (p *parentSession) quiet(t *testing.T, d time.Duration) {
	t.Helper()
	deadline := time.After(d)
	for {
		select {
		case m := <-p.frames:
			if st, ok := m.(*tunnel.Status); ok {
				t.Fatalf("the child sent %+v; want nothing", st)
			}
		case <-deadline:
			return
		}
	}
}

// After a reconnect to a parent that applied all of its report, a child
// sends only what changed since; to one that did not, the whole report.
func TestReportGoesOnAfterReconnect(t *testing.T) {
	addr, ca, sessions := testParent(t)
	key, _, err := newKey("box-1")
	if err != nil {
		t.Fatal(err)
	}
	certPEM, _, err := ca.Issue(pki.Request{CommonName: "box-1", Client: true, Validity: time.Hour, PublicKey: key.Public()})
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, _ := pki.EncodeKey(key)
	store := &memStore{id: Identity{Cluster: "box-1", Cert: certPEM, Key: keyPEM, CA: ca.CertPEM, Server: addr}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		Run(ctx, Config{Store: store, AgentVersion: "test", Backoff: backoff.Backoff{Min: 50 * time.Millisecond, Max: 200 * time.Millisecond}})
	}()
	defer func() { cancel(); <-done }()
	dep := func(name string) tunnel.Deployment {
		return tunnel.Deployment{Namespace: "default", Name: name, Targets: []string{"box-1"}}
	}

	// First tunnel: the whole report, then a change.
	p := (<-sessions)(tunnel.ReportMark{})
	first := p.nextStatus(t)
	if !first.Reset || !first.Sync || first.Mark.Epoch == 0 || first.Mark.Seq != 1 {
		t.Fatalf("first report: %+v; want the whole report as frame 1 of an epoch", first)
	}
	p.out.Send(&tunnel.Desired{Revision: 1, Deployments: []tunnel.Deployment{dep("a")}})
	st := p.nextStatus(t)
	if st.Reset || st.Mark != (tunnel.ReportMark{Epoch: first.Mark.Epoch, Seq: 2}) || len(st.Deployments) != 1 || st.Deployments[0].Name != "a" {
		t.Fatalf("after a deployment: %+v; want frame 2 with a's state only", st)
	}
	p.conn.CloseWithError(0, "link lost")

	// Second tunnel: the parent applied both frames. Nothing changed, so
	// nothing goes; then only the next change does.
	p = (<-sessions)(st.Mark)
	p.quiet(t, time.Second)
	p.out.Send(&tunnel.Desired{Revision: 2, Deployments: []tunnel.Deployment{dep("a"), dep("b")}})
	st = p.nextStatus(t)
	if st.Reset || st.Mark != (tunnel.ReportMark{Epoch: first.Mark.Epoch, Seq: 3}) || len(st.Deployments) != 2 {
		t.Fatalf("after the reconnect: %+v; want frame 3 with the new revision's states", st)
	}
	p.conn.CloseWithError(0, "link lost")

	// Third tunnel: the parent missed the last frame. The whole report
	// goes again, in a new epoch.
	p = (<-sessions)(tunnel.ReportMark{Epoch: first.Mark.Epoch, Seq: 2})
	st = p.nextStatus(t)
	if !st.Reset || !st.Sync || st.Mark.Epoch == first.Mark.Epoch || st.Mark.Seq != 1 || len(st.Deployments) != 2 {
		t.Fatalf("to a parent that missed a frame: %+v; want the whole report as frame 1 of a new epoch", st)
	}
}
