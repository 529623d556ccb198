package tunnel

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/ote-edge/ote/cloud/pki"
)

// testTree is a tree's CA with a parent's identity and a child's (box-1).
func testTree(t *testing.T) (ca *pki.CA, server, client tls.Certificate) {
	t.Helper()
	ca, err := pki.NewCA("test tree")
	if err != nil {
		t.Fatal(err)
	}
	pair := func(req pki.Request) tls.Certificate {
		certPEM, keyPEM, err := ca.Issue(req)
		if err != nil {
			t.Fatal(err)
		}
		p, err := tls.X509KeyPair(append(certPEM, ca.CertPEM...), keyPEM)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	server = pair(pki.Request{CommonName: ServerName, DNSNames: []string{ServerName}, Server: true, Validity: time.Hour})
	client = pair(pki.Request{CommonName: "box-1", Client: true, Validity: time.Hour})
	return ca, server, client
}

// A parent that dies and comes back on the same port answers its old
// connections' packets with stateless resets made from the same key: the
// child learns at once that its tunnel is gone, long before its idle
// timeout.
func TestRestartedParentResetsOldConnections(t *testing.T) {
	ca, server, client := testTree(t)
	key := [32]byte{1, 2, 3}
	ln, err := Listen("127.0.0.1:0", ServerTLS(server, ca.Cert), ListenConfig{ResetKey: key})
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	accepted := make(chan error, 1)
	go func() {
		conn, err := ln.Accept(context.Background())
		if err == nil {
			_, err = conn.AcceptStream(context.Background())
		}
		accepted <- err
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := quic.DialAddr(ctx, addr, ClientTLS(client, ca.Cert), ChildQUICConfig(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.CloseWithError(0, "")
	str, err := conn.OpenStreamSync(ctx)
	if err == nil {
		err = WriteFrame(str, &Hello{CapabilityVersion: CapabilityVersion})
	}
	if err == nil {
		err = <-accepted
	}
	if err != nil {
		t.Fatal(err)
	}

	// The parent dies without a word: its socket goes, nothing is sent.
	ln.tr.Conn.Close()
	ln.Close()
	ln2, err := Listen(addr, ServerTLS(server, ca.Cert), ListenConfig{ResetKey: key})
	if err != nil {
		t.Fatal(err)
	}
	defer ln2.Close()
	// The child's next frame is answered with a reset. (QUIC sends none
	// for packets as small as a bare keepalive: a reset must be smaller
	// than what it answers.)
	if err := WriteFrame(str, &Status{Clusters: []ClusterStatus{{Name: "box-2", Parent: "box-1", Phase: "Connected"}}}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-conn.Context().Done():
	case <-time.After(20 * time.Second):
		t.Fatal("the child's connection outlived its parent's restart")
	}
	var reset *quic.StatelessResetError
	if cause := context.Cause(conn.Context()); !errors.As(cause, &reset) {
		t.Fatalf("connection ended with %v, want a stateless reset", cause)
	}
}

// TestHandshakesBeyondTheLimitAreRefused: a parent busy with as many
// handshakes as it allows refuses the next connection at once, and takes
// connections again as its handshakes end, whether they were accepted or
// failed.
func TestHandshakesBeyondTheLimitAreRefused(t *testing.T) {
	ca, server, client := testTree(t)
	ln, err := Listen("127.0.0.1:0", ServerTLS(server, ca.Cert), ListenConfig{MaxHandshakes: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// One handshake in progress, as far as the listener knows.
	busy, stop := context.WithCancel(ctx)
	if _, err := ln.admit(busy, nil); err != nil {
		t.Fatal(err)
	}
	_, err = quic.DialAddr(ctx, ln.Addr().String(), ClientTLS(client, ca.Cert), ChildQUICConfig(time.Minute))
	var refused *quic.TransportError
	if !errors.As(err, &refused) || refused.ErrorCode != quic.ConnectionRefused {
		t.Fatalf("dial while busy: %v, want CONNECTION_REFUSED", err)
	}

	// That handshake fails: there is room again.
	stop()
	waitNoHandshakes(ctx, t, ln, "after the failed handshake")
	go func() {
		conn, err := ln.Accept(ctx)
		if err == nil {
			<-conn.Context().Done()
		}
	}()
	conn, err := quic.DialAddr(ctx, ln.Addr().String(), ClientTLS(client, ca.Cert), ChildQUICConfig(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.CloseWithError(0, "")
	// Accepted: its handshake no longer counts.
	waitNoHandshakes(ctx, t, ln, "after the accept")
}

// waitNoHandshakes waits until the listener counts no handshake, and fails
// the test when ctx ends first.
func waitNoHandshakes(ctx context.Context, t *testing.T, ln *Listener, when string) {
	t.Helper()
	for ln.handshakes.Load() != 0 {
		if ctx.Err() != nil {
			t.Fatalf("%d handshakes still counted %s", ln.handshakes.Load(), when)
		}
		time.Sleep(time.Millisecond)
	}
}

// A closed listener gives its port back.
func TestListenerCloseFreesItsPort(t *testing.T) {
	ca, server, _ := testTree(t)
	ln, err := Listen("127.0.0.1:0", ServerTLS(server, ca.Cert), ListenConfig{})
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	again, err := Listen(addr, ServerTLS(server, ca.Cert), ListenConfig{})
	if err != nil {
		t.Fatalf("the port of a closed listener: %v", err)
	}
	again.Close()
}

// TestParentKeepsSilentChildAlive: a parent pings its children, on their
// slots or, for a child that takes no datagrams, by QUIC's keepalive, so
// a child that sends no keepalives of its own keeps its tunnel well past
// its idle timeout; unless the parent is told never to ping.
func TestParentKeepsSilentChildAlive(t *testing.T) {
	ca, server, client := testTree(t)
	const idle = 5 * time.Second // QUIC's least
	for _, tc := range []struct {
		name      string
		keepAlive time.Duration
		datagrams bool // the child takes datagrams: pinged on its slot, else by QUIC's keepalive
		alive     bool
	}{
		{"default", 0, false, true}, // QUIC pings at half the idle timeout
		{"datagrams", 2 * time.Second, true, true},
		{"never", -1, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ln, err := Listen("127.0.0.1:0", ServerTLS(server, ca.Cert), ListenConfig{KeepAlive: tc.keepAlive})
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			conn, parentSide := connectChild(t, ln, ClientTLS(client, ca.Cert), &quic.Config{MaxIdleTimeout: idle, EnableDatagrams: tc.datagrams})
			time.Sleep(time.Second) // past the handshake's packets
			received := conn.ConnectionStats().PacketsReceived
			const wait = 2*idle + idle/2
			select {
			case <-conn.Context().Done():
				if tc.alive {
					t.Fatalf("the silent child's tunnel ended: %v", context.Cause(conn.Context()))
				}
				var idleErr *quic.IdleTimeoutError
				if cause := context.Cause(conn.Context()); !errors.As(cause, &idleErr) {
					t.Fatalf("the silent child's tunnel ended with %v, want its idle timeout", cause)
				}
				return
			case <-time.After(wait):
				if !tc.alive {
					t.Fatalf("the silent child's tunnel outlived its idle timeout (%v) by far, with a parent that never pings", idle)
				}
			}
			if parentSide.Context().Err() != nil {
				t.Fatalf("the parent's side ended: %v", context.Cause(parentSide.Context()))
			}
			// A ping every 2 s or 2.5 s: five or six in that time.
			if got := conn.ConnectionStats().PacketsReceived - received; got < 4 {
				t.Errorf("the child received %d packets in %v, want the parent's keepalives", got, wait)
			}
		})
	}
}

// TestParentPingsBeforeItsChildren: whatever a child's lostAfter, its
// parent's keepalive interval (QUIC takes the smaller of the configured
// one and half the idle timeout) is no longer than the child's, and
// with the default lostAfter it is shorter by a margin for the RTT.
func TestParentPingsBeforeItsChildren(t *testing.T) {
	parent := QUICConfig()
	for _, lostAfter := range []time.Duration{time.Second, 10 * time.Second, 26 * time.Second, DefaultLostAfter, 45 * time.Second, time.Minute, 5 * time.Minute} {
		child := ChildQUICConfig(lostAfter)
		idle := min(parent.MaxIdleTimeout, child.MaxIdleTimeout)
		p, c := min(parent.KeepAlivePeriod, idle/2), min(child.KeepAlivePeriod, idle/2)
		if p > c {
			t.Errorf("lostAfter %v: the parent pings every %v, after its child (every %v)", lostAfter, p, c)
		}
		if lostAfter >= DefaultLostAfter && c-p < time.Second {
			t.Errorf("lostAfter %v: the parent pings every %v, its child every %v: no margin for the RTT", lostAfter, p, c)
		}
	}
}

// TestParentPingsEachChildOnItsSlot: the parent pings each child that
// takes datagrams once a period, on a slot of its own a whole number of
// PingTicks into it, so that children connected together are pinged at
// different times, and those that share a slot at the same time. Each
// child's socket notes when its packets come; past the handshake, they
// are the parent's pings.
func TestParentPingsEachChildOnItsSlot(t *testing.T) {
	t.Parallel()
	ca, server, client := testTree(t)
	const period = time.Second
	ln, err := Listen("127.0.0.1:0", ServerTLS(server, ca.Cert), ListenConfig{KeepAlive: period})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	go func() {
		for {
			if _, err := ln.Accept(ctx); err != nil {
				return
			}
		}
	}()
	const children = 12
	socks := make([]*arrivals, children)
	var wg sync.WaitGroup
	for i := range socks {
		udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		socks[i] = &arrivals{PacketConn: udp}
		tr := &quic.Transport{Conn: socks[i]}
		defer tr.Close()
		wg.Go(func() {
			// No keepalives, nor path MTU probes, of the child's own.
			conn, err := tr.Dial(ctx, ln.Addr(), ClientTLS(client, ca.Cert), &quic.Config{MaxIdleTimeout: time.Minute, DisablePathMTUDiscovery: true, EnableDatagrams: true})
			if err != nil {
				t.Error(err)
				return
			}
			context.AfterFunc(ctx, func() { conn.CloseWithError(0, "") })
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	time.Sleep(period / 2) // past the handshake's packets
	from := time.Now()
	for _, s := range socks {
		s.since(from)
	}
	time.Sleep(8 * period)
	// Each child's phase: the median of its pings' times into a period.
	phases := make([]time.Duration, children)
	for i, s := range socks {
		gaps := s.gaps()
		if len(gaps) < 6 {
			t.Fatalf("child %d received %d packets in %v, want a ping every %v", i, len(gaps)+1, 8*period, period)
		}
		slices.Sort(gaps)
		if m := gaps[len(gaps)/2]; m < period-period/20 || m > period+period/20 {
			t.Errorf("child %d: pinged every %v, want %v", i, m, period)
		}
		var into []time.Duration
		for _, at := range s.noted() {
			into = append(into, at.Sub(from)%period)
		}
		slices.Sort(into)
		phases[i] = into[len(into)/2]
	}
	slices.Sort(phases)
	if phases[children-1]-phases[0] < 2*PingTick {
		t.Errorf("%d children are pinged within %v of each other in each period (phases %v): the parent pings them together", children, phases[children-1]-phases[0], phases)
	}
	// Slots are PingTick apart: two children's phases differ by a
	// multiple of it, give or take the delivery's jitter.
	for i := 1; i < children; i++ {
		off := (phases[i] - phases[0]) % PingTick
		if off > PingTick/2 {
			off -= PingTick
		}
		if off < -PingTick/4 || off > PingTick/4 {
			t.Errorf("children pinged %v apart in each period, not a multiple of %v (phases %v)", phases[i]-phases[0], PingTick, phases)
			break
		}
	}
}

// TestPingWheel: turned by hand, the wheel pings each child once a
// period on its own slot, each once after a pause however long, and
// none once it is removed; its timer waits for the next slot that has
// children.
func TestPingWheel(t *testing.T) {
	p := newWheel(13 * time.Second)
	if want := int64(13 * time.Second / PingTick); p.slots != want || p.tick != PingTick {
		t.Fatalf("%d slots of %v in 13s, want %d of %v", p.slots, p.tick, want, PingTick)
	}
	start := p.tickOf(time.Now())
	at := func(tick int64) time.Time { return p.epoch.Add(time.Duration(tick)*p.tick + p.tick/2) }
	const children = 1000
	slots := map[pingee]int64{}
	for range children {
		c := new(silentChild)
		slots[c] = p.add(c)
	}
	pinged := map[pingee][]int64{} // the ticks each child was pinged in
	for tick := start + 1; tick <= start+3*p.slots; tick++ {
		for _, c := range p.take(at(tick)) {
			pinged[c] = append(pinged[c], tick)
		}
		if !p.armed {
			t.Fatalf("tick %d: the wheel of %d children set no timer", tick, p.n)
		}
		for s := tick + 1; s < p.wake; s++ {
			if len(p.wheel[s%p.slots]) > 0 {
				t.Fatalf("tick %d: the timer is set for tick %d, past slot %d's children", tick, p.wake, s%p.slots)
			}
		}
	}
	for c, slot := range slots {
		ticks := pinged[c]
		if len(ticks) != 3 {
			t.Fatalf("child on slot %d pinged %d times in 3 periods, want 3", slot, len(ticks))
		}
		for _, tick := range ticks {
			if tick%p.slots != slot {
				t.Fatalf("child on slot %d pinged in tick %d, slot %d", slot, tick, tick%p.slots)
			}
		}
	}

	// A pause of five periods: every child once, then each on its slot.
	var gone pingee
	for c := range slots {
		gone = c
		p.remove(c, slots[c])
		break
	}
	resume := start + 8*p.slots + 17
	due := p.take(at(resume))
	if len(due) != children-1 || slices.Contains(due, gone) {
		t.Fatalf("after a pause, %d pinged (the removed child among them: %v), want each of the %d left once", len(due), slices.Contains(due, gone), children-1)
	}
	next := p.take(at(resume + 1))
	for _, c := range next {
		if slots[c] != (resume+1)%p.slots {
			t.Fatalf("after the pause, slot %d pinged in the tick of slot %d", slots[c], (resume+1)%p.slots)
		}
	}

	// Emptied, the wheel sets no timer; it turns on from the time a
	// child comes.
	for c, slot := range slots {
		p.remove(c, slot)
	}
	p.take(at(resume + 2))
	if p.armed || p.n != 0 {
		t.Fatalf("an empty wheel: armed %v with %d children", p.armed, p.n)
	}
	if got := newWheel(30 * time.Millisecond); got.slots != 1 || got.tick != 30*time.Millisecond {
		t.Errorf("a period of 30ms: %d slots of %v, want one of 30ms", got.slots, got.tick)
	}
}

// silentChild is a child that the wheel can ping. It is not empty, so
// that each one has an address, and a key on the wheel, of its own.
type silentChild struct{ pings int }

func (c *silentChild) SendDatagram([]byte) error { c.pings++; return nil }

// arrivals is a socket that notes when each packet comes.
type arrivals struct {
	net.PacketConn
	mu    sync.Mutex
	from  time.Time
	times []time.Time
}

func (a *arrivals) ReadFrom(b []byte) (int, net.Addr, error) {
	n, addr, err := a.PacketConn.ReadFrom(b)
	if err == nil {
		a.mu.Lock()
		if now := time.Now(); !now.Before(a.from) {
			a.times = append(a.times, now)
		}
		a.mu.Unlock()
	}
	return n, addr, err
}

// since forgets the packets before t, and notes those after it.
func (a *arrivals) since(t time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.from, a.times = t, nil
}

// noted is when each packet noted came.
func (a *arrivals) noted() []time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.times)
}

// gaps is the time between each packet noted and the one before it.
func (a *arrivals) gaps() []time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	var d []time.Duration
	for i := 1; i < len(a.times); i++ {
		d = append(d, a.times[i].Sub(a.times[i-1]))
	}
	return d
}

// connectChild dials ln as a child with tlsConf and cfg, and returns both
// ends of the tunnel once the parent has accepted it; both close when the
// test ends.
func connectChild(t *testing.T, ln *Listener, tlsConf *tls.Config, cfg *quic.Config) (child, parent *quic.Conn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	accepted := make(chan *quic.Conn, 1)
	go func() {
		if conn, err := ln.Accept(ctx); err == nil {
			accepted <- conn
		}
	}()
	child, err := quic.DialAddr(ctx, ln.Addr().String(), tlsConf, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { child.CloseWithError(0, "") })
	select {
	case parent = <-accepted:
		t.Cleanup(func() { parent.CloseWithError(0, "") })
	case <-ctx.Done():
		t.Fatal("the parent accepted no connection")
	}
	return child, parent
}
