package tunnel

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/quic-go/quic-go"
)

// PingTick is the grain of a parent's pings: each child is pinged on a
// slot of its own, a whole number of ticks into the period, so that the
// pings of all the children in one slot go out together.
//
// A process that holds many thousand tunnels pays for each wake-up of
// its threads more than for the packet it sends then: with QUIC's own
// keepalives, each timed from the last packet its connection received,
// every ping woke the parent once to send it and once for its ACK, and
// the child twice likewise. Pings that share a slot share those
// wake-ups, at both ends: the child's ACKs, sent a fixed delay after the
// pings came, come back together too.
//
// They share the runtime's passes over its timer heap too. Each ping
// sets its connection's timer earlier (to the probe timeout, and at the
// child to the ACK's delay), and the runtime visits every timer in the
// heap, one per connection, when the first timer so set comes due. At
// 20k connections a shard, those passes took 22% of its CPU with ticks
// of 50 ms, and 8% with ticks of 250 ms. With 40k children on two
// shards, the shards then held them on 0.23 of a core instead of 0.31,
// and the load generator's leaves on 0.25 instead of 0.34. The price is
// a burstier slot: at 100k children pinged every 13 s, about 1,900 pings
// go out together, over all the shards.
const PingTick = 250 * time.Millisecond

// pingee is a child as its pinger sees it: a *quic.Conn that takes
// datagrams.
type pingee interface {
	SendDatagram([]byte) error
}

// pinger pings the children of one listener each period, on a wheel of
// slots of PingTick from its epoch. A child's slot is drawn at random
// when it connects and is kept for as long as it stays connected, so the
// pings stay spread over the period whatever happens: after a pause of
// the process (a collection, a starved core), the slots that came due
// during it are pinged at once, each child once, and each child's next
// ping is on its own slot again. (Pings timed from the last packet
// received, as QUIC's keepalives are, stay lined up after such a pause,
// and their ACKs came back as a burst every period.)
//
// One timer serves the wheel, set for its next slot that has children:
// a timer per child made the runtime's timer heap as long as the
// children, and the runtime scans all of it whenever the time of a
// timer that was reset comes, which happens all the time: quic-go resets
// each connection's timer on almost every packet. A pinger with no
// children sets no timer.
//
// A ping is a DATAGRAM frame (RFC 9221) with nothing in it, which the
// child acknowledges like any packet and need not read; QUIC has no
// PING an application could send. A child that does not take datagrams
// is pinged by QUIC's keepalive instead (QUICConfig).
type pinger struct {
	tick  time.Duration
	slots int64 // a period is slots ticks
	epoch time.Time
	timer *time.Timer // nil: the wheel is turned by hand (tests)

	mu    sync.Mutex
	wheel []map[pingee]struct{} // the children of each slot
	n     int                   // children on the wheel
	next  int64                 // the first tick not yet pinged
	armed bool                  // the timer is set, for tick wake
	wake  int64
}

// newPinger pings each child every period, rounded down to a whole
// number of ticks of PingTick (or of the period itself, if shorter).
func newPinger(period time.Duration) *pinger {
	p := newWheel(period)
	p.timer = time.AfterFunc(time.Hour, p.fire)
	p.timer.Stop()
	return p
}

// newWheel is a pinger without its timer.
func newWheel(period time.Duration) *pinger {
	tick := min(PingTick, max(period, time.Millisecond))
	slots := max(int64(period/tick), 1)
	return &pinger{tick: tick, slots: slots, epoch: time.Now(), wheel: make([]map[pingee]struct{}, slots)}
}

// tickOf is the tick that t falls in.
func (p *pinger) tickOf(t time.Time) int64 { return int64(t.Sub(p.epoch) / p.tick) }

// ping pings conn from now on, until it ends.
func (p *pinger) ping(conn *quic.Conn) {
	slot := p.add(conn)
	// A connection that ends is let go at once, not at its next slot.
	context.AfterFunc(conn.Context(), func() { p.remove(conn, slot) })
}

// add puts c on a slot drawn at random, from which remove takes it.
func (p *pinger) add(c pingee) (slot int64) {
	slot = rand.Int64N(p.slots)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.wheel[slot] == nil {
		p.wheel[slot] = make(map[pingee]struct{})
	}
	p.wheel[slot][c] = struct{}{}
	p.n++
	if !p.armed {
		// The wheel stood still: it turns on from now, not from the
		// last slot it pinged.
		p.next = max(p.next, p.tickOf(time.Now())+1)
	}
	p.arm()
	return slot
}

// remove takes c off its slot. The timer, if set for that slot, fires
// anyway and finds nothing to ping there.
func (p *pinger) remove(c pingee, slot int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.wheel[slot][c]; ok {
		delete(p.wheel[slot], c)
		p.n--
	}
}

// arm sets the timer for the first tick from next whose slot has
// children, unless it is set for an earlier one already. The caller
// holds mu.
func (p *pinger) arm() {
	if p.n == 0 {
		return
	}
	for t := p.next; t < p.next+p.slots; t++ {
		if len(p.wheel[t%p.slots]) == 0 {
			continue
		}
		if p.armed && p.wake <= t {
			return
		}
		p.armed, p.wake = true, t
		if p.timer != nil {
			p.timer.Reset(time.Until(p.epoch.Add(time.Duration(t) * p.tick)))
		}
		return
	}
}

// take returns the children of every slot that has come due by now and
// was not pinged yet, each child once however long the wheel stood, and
// sets the timer for the next slot.
func (p *pinger) take(now time.Time) []pingee {
	p.mu.Lock()
	defer p.mu.Unlock()
	last := p.tickOf(now)
	var due []pingee
	for t := max(p.next, last-p.slots+1); t <= last; t++ {
		for c := range p.wheel[t%p.slots] {
			due = append(due, c)
		}
	}
	p.next = max(p.next, last+1)
	p.armed = false
	p.arm()
	return due
}

// fire pings the children whose slots have come due. It sets the timer
// for the next slot before it pings, so that a slow ping does not hold
// up the next slot's: fires may overlap, each with slots of its own.
// SendDatagram blocks only with 32 datagrams queued on its connection,
// which no connection holds for long: the pings are a period apart, and
// one that cannot send that many periods has heard nothing for as long,
// and has reached its idle timeout and ended, failing the send.
func (p *pinger) fire() {
	for _, c := range p.take(time.Now()) {
		c.SendDatagram(nil)
	}
}
