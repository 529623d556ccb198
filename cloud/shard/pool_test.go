//go:build linux

package shard

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"golang.org/x/sys/unix"

	"github.com/ote-edge/ote/cloud/pki"
	"github.com/ote-edge/ote/cloud/profiling"
	"github.com/ote-edge/ote/cloud/tunnel"
)

// shardEnv makes the test binary a shard's process, as `ote-cloud
// tunnel-shard` is in the product.
const shardEnv = "OTE_TEST_TUNNEL_SHARD"

func TestMain(m *testing.M) {
	if os.Getenv(shardEnv) != "" {
		if err := Serve(context.Background(), os.NewFile(fdSocket, "udp"), os.NewFile(fdChannel, "channel"), os.Stderr); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// tree is a test tree: its CA, and certificates it issued.
type tree struct {
	ca *pki.CA
	t  *testing.T
}

func (tr tree) pair(req pki.Request) tls.Certificate {
	tr.t.Helper()
	certPEM, keyPEM, err := tr.ca.Issue(req)
	if err != nil {
		tr.t.Fatal(err)
	}
	p, err := tls.X509KeyPair(append(certPEM, tr.ca.CertPEM...), keyPEM)
	if err != nil {
		tr.t.Fatal(err)
	}
	return p
}

func (tr tree) server() *tls.Certificate {
	p := tr.pair(pki.Request{CommonName: tunnel.ServerName, DNSNames: []string{tunnel.ServerName}, Server: true, Validity: time.Hour})
	return &p
}

// testPool starts a Pool of cfg.Shards shard processes, which are this
// test binary, on loopback; cfg gives the rest (ProfilingListen, Nice).
func testPool(t *testing.T, cfg Config) (tree, *Pool) {
	ca, err := pki.NewCA("test tree")
	if err != nil {
		t.Fatal(err)
	}
	tr := tree{ca: ca, t: t}
	cfg.Listen, cfg.Root, cfg.ResetKey = "127.0.0.1:0", ca.Cert, [32]byte{9}
	cfg.Command = func(i int) *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%d", shardEnv, i))
		return cmd
	}
	p, err := Listen(cfg)
	if err != nil {
		t.Fatal(err)
	}
	p.SetCertificate(tr.server())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		p.Run(ctx)
		close(done)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return tr, p
}

// shards finds this process's shard processes: their pids by shard.
func shards(t *testing.T) map[int]int {
	t.Helper()
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", os.Getpid()))
	out := map[int]int{}
	for _, f := range tasks {
		b, _ := os.ReadFile(f)
		for _, field := range strings.Fields(string(b)) {
			pid, _ := strconv.Atoi(field)
			env, _ := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
			for _, kv := range strings.Split(string(env), "\x00") {
				if v, ok := strings.CutPrefix(kv, shardEnv+"="); ok {
					i, _ := strconv.Atoi(v)
					out[i] = pid
				}
			}
		}
	}
	return out
}

// child is a test child's end of its tunnel.
type child struct {
	name string
	conn *quic.Conn
	str  *quic.Stream
	r    *tunnel.Reader
}

func dial(t *testing.T, ctx context.Context, tr tree, qt *quic.Transport, addr net.Addr, name string) *child {
	t.Helper()
	id := tr.pair(pki.Request{CommonName: name, Client: true, Validity: time.Hour})
	conn, err := qt.Dial(ctx, addr, tunnel.ClientTLS(id, tr.ca.Cert), tunnel.ChildQUICConfig(time.Minute))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	str, err := conn.OpenStreamSync(ctx)
	if err == nil {
		err = tunnel.WriteFrame(str, &tunnel.Hello{CapabilityVersion: tunnel.CapabilityVersion, AgentVersion: name})
	}
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	c := &child{name: name, conn: conn, str: str, r: tunnel.NewReader(str)}
	if w := c.read(t, "Welcome").(*tunnel.Welcome); w.Parent != "to "+name {
		t.Fatalf("%s: welcomed as %q", name, w.Parent)
	}
	return c
}

func (c *child) read(t *testing.T, want string) any {
	t.Helper()
	c.str.SetReadDeadline(time.Now().Add(30 * time.Second))
	m, err := c.r.Read()
	if err != nil || !strings.HasSuffix(fmt.Sprintf("%T", m), "."+want) {
		t.Fatalf("%s: want %s, got %T, %v", c.name, want, m, err)
	}
	return m
}

// lastWord is the revision of an Ack that the test parent answers as it
// does an enrollment, and then closes the connection.
const lastWord = 77

// parent is the test's controller: it welcomes each child by its
// certificate's name, answers each Ack with a Desired of the revision
// acked and a body as long as the Ack's Resend flag asks, and keeps the
// connections by name.
type parent struct {
	mu    sync.Mutex
	conns map[string]tunnel.Conn
	got   map[string][]any // frames after Hello, by child
	ended map[string]error // the connections' causes, by child
}

func serveParent(t *testing.T, ctx context.Context, p *Pool) *parent {
	pt := &parent{conns: map[string]tunnel.Conn{}, got: map[string][]any{}, ended: map[string]error{}}
	go func() {
		for {
			conn, err := p.Accept(ctx)
			if err != nil {
				return
			}
			go pt.serve(t, conn)
		}
	}()
	return pt
}

func (pt *parent) serve(t *testing.T, conn tunnel.Conn) {
	if conn.ALPN() != tunnel.ALPN || len(conn.PeerCertificates()) == 0 {
		t.Errorf("a relayed connection on %q with %d certificates", conn.ALPN(), len(conn.PeerCertificates()))
		return
	}
	name := conn.PeerCertificates()[0].Subject.CommonName
	str, err := conn.AcceptStream(context.Background())
	if err != nil {
		t.Errorf("%s: %v", name, err)
		return
	}
	str.SetReadDeadline(time.Now().Add(10 * time.Second))
	r := tunnel.NewReader(str)
	m, err := r.Read()
	if hello, ok := m.(*tunnel.Hello); err != nil || !ok || hello.AgentVersion != name {
		t.Errorf("%s: want its Hello, got %T %+v, %v", name, m, m, err)
		return
	}
	str.SetReadDeadline(time.Time{})
	out := tunnel.NewWriter(str)
	out.Send(&tunnel.Welcome{Parent: "to " + name})
	pt.mu.Lock()
	pt.conns[name] = conn
	pt.mu.Unlock()
	for {
		m, err := r.Read()
		if err != nil {
			break
		}
		pt.mu.Lock()
		pt.got[name] = append(pt.got[name], m)
		pt.mu.Unlock()
		if a, ok := m.(*tunnel.Ack); ok {
			d := &tunnel.Desired{Revision: a.Revision, Hash: strings.Repeat("h", int(a.Revision))}
			out.Send(d)
			if a.Revision == lastWord {
				// As an enrollment ends: the answer, the stream's end,
				// and a while later the connection's.
				str.Close()
				time.Sleep(time.Second)
				conn.CloseWithError(tunnel.CloseNormal, "that was all")
			}
		}
	}
	<-conn.Context().Done()
	pt.mu.Lock()
	pt.ended[name] = context.Cause(conn.Context())
	pt.mu.Unlock()
}

func (pt *parent) conn(t *testing.T, name string) tunnel.Conn {
	t.Helper()
	for range 100 {
		pt.mu.Lock()
		c := pt.conns[name]
		pt.mu.Unlock()
		if c != nil {
			return c
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s: no connection", name)
	return nil
}

// cause waits for the end of a child's connection at the parent.
func (pt *parent) cause(t *testing.T, name string) error {
	t.Helper()
	for range 3000 {
		pt.mu.Lock()
		err, ok := pt.ended[name]
		pt.mu.Unlock()
		if ok {
			return err
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s: its connection did not end at the parent", name)
	return nil
}

// A parent serves its children through two shard processes as if it held
// their connections: each child is welcomed by the name of its own
// certificate; frames far larger than a relay's buffers pass whole both
// ways; each side's close reaches the other with its code and reason;
// a new certificate is served at once; a shard that dies is started
// again on its socket, and its children connect again; and when the
// Pool stops, the connections left are closed as a parent's shutdown.
func TestPoolRelaysChildren(t *testing.T) {
	tr, p := testPool(t, Config{Shards: 2})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pt := serveParent(t, ctx, p)

	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	qt := &quic.Transport{Conn: udp}
	defer qt.Close()
	children := map[string]*child{}
	for i := range 16 {
		c := dial(t, ctx, tr, qt, p.Addr(), fmt.Sprintf("leaf-%d", i))
		children[c.name] = c
	}

	// Large frames, both ways.
	big := &tunnel.Status{Deployments: make([]tunnel.DeploymentStatus, 3000)}
	for i := range big.Deployments {
		big.Deployments[i] = tunnel.DeploymentStatus{Namespace: "ns", Name: fmt.Sprintf("dep-%d", i), Cluster: "leaf-2", Phase: "Applied"}
	}
	c2 := children["leaf-2"]
	if err := tunnel.WriteFrame(c2.str, big); err != nil {
		t.Fatal(err)
	}
	if err := tunnel.WriteFrame(c2.str, &tunnel.Ack{Revision: 200000}); err != nil {
		t.Fatal(err)
	}
	if d := c2.read(t, "Desired").(*tunnel.Desired); d.Revision != 200000 || len(d.Hash) != 200000 {
		t.Fatalf("leaf-2: Desired %d with a hash of %d bytes, want 200000 and 200000", d.Revision, len(d.Hash))
	}
	pt.mu.Lock()
	got := pt.got["leaf-2"]
	pt.mu.Unlock()
	if st, ok := got[0].(*tunnel.Status); !ok || len(st.Deployments) != 3000 || st.Deployments[2999].Name != "dep-2999" {
		t.Fatalf("leaf-2: the parent got %T first, not the Status of 3000 deployments", got[0])
	}

	// The parent closes one child; another closes its own connection.
	pt.conn(t, "leaf-0").CloseWithError(tunnel.CloseRevoked, "cluster leaf-0 was revoked")
	<-children["leaf-0"].conn.Context().Done()
	var ae *quic.ApplicationError
	if err := context.Cause(children["leaf-0"].conn.Context()); !errors.As(err, &ae) || ae.ErrorCode != tunnel.CloseRevoked || ae.ErrorMessage != "cluster leaf-0 was revoked" {
		t.Errorf("leaf-0: closed with %v, want code %d and the parent's reason", err, tunnel.CloseRevoked)
	}
	children["leaf-1"].conn.CloseWithError(tunnel.CloseNormal, "box going down")
	if err := pt.cause(t, "leaf-1"); err == nil || !strings.Contains(err.Error(), "box going down") {
		t.Errorf("leaf-1: its end at the parent is %v, want the child's reason", err)
	}
	// The parent ends its side of the stream, and later the connection:
	// the child reads all that was sent, then the stream's end, and the
	// connection lives on until the parent closes it.
	c3 := children["leaf-3"]
	if err := tunnel.WriteFrame(c3.str, &tunnel.Ack{Revision: lastWord}); err != nil {
		t.Fatal(err)
	}
	c3.read(t, "Desired")
	if m, err := c3.r.Read(); !errors.Is(err, io.EOF) {
		t.Fatalf("leaf-3: after the last frame, %T, %v; want the stream's end", m, err)
	}
	time.Sleep(300 * time.Millisecond)
	if err := context.Cause(c3.conn.Context()); err != nil {
		t.Fatalf("leaf-3: its connection ended with its stream: %v", err)
	}
	<-c3.conn.Context().Done()
	if err := context.Cause(c3.conn.Context()); !errors.As(err, &ae) || ae.ErrorCode != tunnel.CloseNormal || ae.ErrorMessage != "that was all" {
		t.Errorf("leaf-3: closed with %v, want the parent's close", err)
	}
	delete(children, "leaf-0")
	delete(children, "leaf-1")
	delete(children, "leaf-3")

	// A new certificate is served to the next child.
	fresh := tr.server()
	p.SetCertificate(fresh)
	time.Sleep(200 * time.Millisecond)
	c := dial(t, ctx, tr, qt, p.Addr(), "leaf-new")
	if got := c.conn.ConnectionState().TLS.PeerCertificates[0]; !got.Equal(fresh.Leaf) {
		t.Errorf("leaf-new: served certificate %v, want the new one %v", got.SerialNumber, fresh.Leaf.SerialNumber)
	}
	children[c.name] = c

	// A shard dies: its children's connections end at the parent, the
	// others' go on, and it is back on its socket for new children.
	var before map[int]int
	for range 100 {
		if before = shards(t); len(before) == 2 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(before) != 2 {
		t.Fatalf("shard processes %v, want 2", before)
	}
	if err := syscall.Kill(before[1], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var lost, alive []string
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		lost = lost[:0]
		for name := range children {
			pt.mu.Lock()
			_, ended := pt.ended[name]
			pt.mu.Unlock()
			if ended {
				lost = append(lost, name)
			}
		}
		if len(lost) > 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(lost) == 0 || len(lost) == len(children) {
		t.Fatalf("%d of %d children lost with one of two shards", len(lost), len(children))
	}
	for _, name := range lost {
		if err := pt.cause(t, name); !strings.Contains(err.Error(), "shard") {
			t.Errorf("%s: ended with %v, want the shard's end", name, err)
		}
	}
	for name, c := range children {
		if !slices.Contains(lost, name) {
			alive = append(alive, name)
			if err := tunnel.WriteFrame(c.str, &tunnel.Ack{Revision: 3}); err != nil {
				t.Fatal(err)
			}
			c.read(t, "Desired")
		}
	}
	for i := 0; ; i++ {
		if pid := shards(t)[1]; pid != 0 && pid != before[1] {
			break
		}
		if i > 100 {
			t.Fatal("shard 1 was not started again")
		}
		time.Sleep(100 * time.Millisecond)
	}
	for i := range 8 {
		dial(t, ctx, tr, qt, p.Addr(), fmt.Sprintf("later-%d", i))
	}

	// The Pool stops: the shards close what is left as a shutdown.
	p.Close()
	for _, name := range alive {
		c := children[name]
		select {
		case <-c.conn.Context().Done():
		case <-time.After(20 * time.Second):
			t.Fatalf("%s: still connected after the Pool closed", name)
		}
		if err := context.Cause(c.conn.Context()); !errors.As(err, &ae) || ae.ErrorCode != tunnel.CloseShutdown {
			t.Errorf("%s: closed with %v, want code %d", name, err, tunnel.CloseShutdown)
		}
	}
}

// Shards' memory bounds are spread below the limit, over a quarter of it.
func TestShardMemoryLimits(t *testing.T) {
	var got []int64
	for i := range 4 {
		got = append(got, shardMemoryLimit(1600, i, 4))
	}
	if want := []int64{1600, 1500, 1400, 1300}; !slices.Equal(got, want) {
		t.Errorf("bounds %v, want %v", got, want)
	}
}

// TestShardProfiles checks that each shard serves its own profiles on
// the port its number above the controller's.
func TestShardProfiles(t *testing.T) {
	base := freePorts(t, 3)
	testPool(t, Config{Shards: 2, ProfilingListen: base})
	for i := range 2 {
		addr := profiling.Beside(base, i+1)
		var body []byte
		for try := 0; ; try++ {
			resp, err := http.Get("http://" + addr + "/debug/pprof/cmdline")
			if err == nil {
				body, _ = io.ReadAll(resp.Body)
				resp.Body.Close()
				break
			}
			if try == 200 {
				t.Fatalf("shard %d's profiles: %v", i, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		// The shard's command line, not this process's.
		if !strings.Contains(string(body), "-test.run=^$") {
			t.Errorf("shard %d's profiles at %s are of %q", i, addr, body)
		}
	}
}

// freePorts finds n free consecutive TCP ports on loopback, and gives
// the first's address.
func freePorts(t *testing.T, n int) string {
	t.Helper()
	for range 20 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ok := true
		var held []net.Listener
		for i := 1; i < n && ok; i++ {
			l, err := net.Listen("tcp", profiling.Beside(addr, i))
			ok = err == nil
			if ok {
				held = append(held, l)
			}
		}
		for _, l := range append(held, ln) {
			l.Close()
		}
		if ok {
			return addr
		}
	}
	t.Fatal("no free consecutive ports")
	return ""
}

// TestShardNiceness: every thread of each shard's process runs at the
// niceness Config.Nice sets, from the runtime's first threads on, and
// this process's threads keep theirs. Raising a niceness needs no
// privilege, but lowering it back does; so both are tested where that is
// allowed, and only the shards' raised niceness elsewhere.
func TestShardNiceness(t *testing.T) {
	own := niceness(t, os.Getpid())
	deltas, privileged := []int{3}, false
	runtime.LockOSThread()
	if unix.Setpriority(unix.PRIO_PROCESS, 0, own[0]-1) == nil {
		privileged = unix.Setpriority(unix.PRIO_PROCESS, 0, own[0]) == nil
		deltas = append(deltas, -4)
	}
	runtime.UnlockOSThread()
	for _, delta := range deltas {
		t.Run(strconv.Itoa(delta), func(t *testing.T) {
			testPool(t, Config{Shards: 2, Nice: delta})
			var pids map[int]int
			for try := 0; len(pids) < 2; try++ {
				if try == 200 {
					t.Fatalf("shard processes: %v, want 2", pids)
				}
				time.Sleep(50 * time.Millisecond)
				pids = shards(t)
			}
			want := own[0] + delta
			for i, pid := range pids {
				got := niceness(t, pid)
				if len(got) < 2 {
					t.Errorf("shard %d has %d threads, want a runtime's several", i, len(got))
				}
				for _, n := range got {
					if n != want {
						t.Errorf("shard %d's threads run at niceness %v, want all at %d", i, got, want)
						break
					}
				}
			}
			for _, n := range niceness(t, os.Getpid()) {
				if privileged && n != own[0] {
					t.Errorf("the controller's threads are at %v after starting shards, want all at %d", niceness(t, os.Getpid()), own[0])
					break
				}
			}
		})
	}
}

// niceness is the niceness of each of pid's threads, from proc(5)'s
// stat: field 19, counted after the command's closing parenthesis.
func niceness(t *testing.T, pid int) []int {
	t.Helper()
	stats, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stat", pid))
	var out []int
	for _, f := range stats {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // a thread that has exited
		}
		_, rest, _ := strings.Cut(string(b), ") ")
		fields := strings.Fields(rest)
		if len(fields) < 17 {
			t.Fatalf("%s: %q", f, b)
		}
		n, err := strconv.Atoi(fields[16])
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		t.Fatalf("no threads of pid %d", pid)
	}
	return out
}

func TestShardProcs(t *testing.T) {
	for _, c := range []struct{ cpus, n, want int }{
		{2, 2, 1}, {2, 6, 1}, {8, 2, 4}, {8, 3, 2}, {1, 64, 1},
	} {
		if got := shardProcs(c.cpus, c.n); got != c.want {
			t.Errorf("shardProcs(%d CPUs, %d shards) = %d, want %d", c.cpus, c.n, got, c.want)
		}
	}
}
