package tests

import (
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// udpProxy relays one client's datagrams to a server and back, dropping
// a share of them and delaying the rest: a bad link on loopback.
type udpProxy struct {
	ln       *net.UDPConn
	server   *net.UDPAddr
	dropPPM  atomic.Int64 // drop probability, parts per million
	delayNS  atomic.Int64
	mu       sync.Mutex
	client   *net.UDPAddr
	upstream *net.UDPConn
	done     chan struct{}
}

func newUDPProxy(t *testing.T, server string) *udpProxy {
	t.Helper()
	saddr, err := net.ResolveUDPAddr("udp", server)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	p := &udpProxy{ln: ln, server: saddr, done: make(chan struct{})}
	go p.fromClients()
	t.Cleanup(func() {
		close(p.done)
		ln.Close()
		p.mu.Lock()
		if p.upstream != nil {
			p.upstream.Close()
		}
		p.mu.Unlock()
	})
	return p
}

func (p *udpProxy) Addr() string { return p.ln.LocalAddr().String() }

// set changes the link: the share of datagrams lost and the delay.
func (p *udpProxy) set(drop float64, delay time.Duration) {
	p.dropPPM.Store(int64(drop * 1e6))
	p.delayNS.Store(int64(delay))
}

func (p *udpProxy) pass(b []byte, send func([]byte)) {
	if rand.Int64N(1e6) < p.dropPPM.Load() {
		return
	}
	pkt := append([]byte(nil), b...)
	time.AfterFunc(time.Duration(p.delayNS.Load()), func() {
		select {
		case <-p.done:
		default:
			send(pkt)
		}
	})
}

func (p *udpProxy) fromClients() {
	buf := make([]byte, 65536)
	for {
		n, from, err := p.ln.ReadFromUDP(buf)
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.upstream == nil || p.client.String() != from.String() {
			// A new client (or a new port after a restart): a new upstream.
			if p.upstream != nil {
				p.upstream.Close()
			}
			up, err := net.DialUDP("udp", nil, p.server)
			if err != nil {
				p.mu.Unlock()
				continue
			}
			p.client, p.upstream = from, up
			go p.fromServer(up, from)
		}
		up := p.upstream
		p.mu.Unlock()
		p.pass(buf[:n], func(b []byte) { up.Write(b) })
	}
}

func (p *udpProxy) fromServer(up *net.UDPConn, client *net.UDPAddr) {
	buf := make([]byte, 65536)
	for {
		n, err := up.Read(buf)
		if err != nil {
			return
		}
		p.pass(buf[:n], func(b []byte) { p.ln.WriteToUDP(b, client) })
	}
}
