package tunnel

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/qlog"
	"github.com/quic-go/quic-go/qlogwriter"
)

// packetSizes counts, from a child's qlog events, the MTU probes it sends
// and the packets it receives larger than QUIC's first packet size,
// which only a parent's MTU probes would be here.
type packetSizes struct{ probesSent, largeReceived atomic.Int64 }

func (p *packetSizes) AddProducer() qlogwriter.Recorder { return p }
func (p *packetSizes) Close() error                     { return nil }
func (p *packetSizes) RecordEvent(ev qlogwriter.Event) {
	switch e := ev.(type) {
	case qlog.PacketSent:
		if e.IsMTUProbePacket {
			p.probesSent.Add(1)
		}
	case qlog.PacketReceived:
		if e.Raw.Length > 1280 {
			p.largeReceived.Add(1)
		}
	}
}

// TestNoPathMTUProbes: neither end of a tunnel probes the path's MTU.
// A tunnel's packets are pings, their ACKs and control frames far
// smaller than the least MTU QUIC allows; each probe is a full-size
// packet the other end must acknowledge, and with many children
// connecting at once their probes and ACKs are a good part of the
// packets.
func TestNoPathMTUProbes(t *testing.T) {
	ca, server, client := testTree(t)
	ln, err := Listen("127.0.0.1:0", ServerTLS(server, ca.Cert), ListenConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var sizes packetSizes
	cfg := ChildQUICConfig(DefaultLostAfter)
	cfg.Tracer = func(context.Context, bool, quic.ConnectionID) qlogwriter.Trace { return &sizes }
	connectChild(t, ln, ClientTLS(client, ca.Cert), cfg)
	// On loopback, a probe would go out within a few RTTs of the
	// handshake: a second is hundreds of them.
	time.Sleep(time.Second)
	if n := sizes.probesSent.Load(); n != 0 {
		t.Errorf("the child sent %d MTU probes", n)
	}
	if n := sizes.largeReceived.Load(); n != 0 {
		t.Errorf("the child received %d packets larger than 1280 bytes: the parent's MTU probes", n)
	}
}
