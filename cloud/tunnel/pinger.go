package tunnel

import (
	"context"
	"math/rand/v2"
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
const PingTick = 50 * time.Millisecond

// pinger pings the children of one listener each period, on a grid of
// slots of PingTick from its epoch. A child's slot is drawn at random
// when it connects and is kept for as long as it stays connected, so the
// pings stay spread over the period whatever happens: after a pause of
// the process (a collection, a starved core), the pings that came due
// during it go out at once, and each child's next one is on its own
// slot again. (Pings timed from the last packet received, as QUIC's
// keepalives are, stay lined up after such a pause, and their ACKs came
// back as a burst every period.)
//
// A ping is a DATAGRAM frame (RFC 9221) with nothing in it, which the
// child acknowledges like any packet and need not read; QUIC has no
// PING an application could send. A child that does not take datagrams
// is pinged by QUIC's keepalive instead (QUICConfig).
type pinger struct {
	period time.Duration
	epoch  time.Time
	slots  int64
}

func newPinger(period time.Duration) *pinger {
	return &pinger{period: period, epoch: time.Now(), slots: max(int64(period/PingTick), 1)}
}

// add pings conn from now on, until it ends.
func (p *pinger) add(conn *quic.Conn) {
	c := &pinged{p: p, conn: conn, offset: time.Duration(rand.Int64N(p.slots)) * PingTick}
	// The timer exists before it can fire: fire resets it.
	c.timer = time.AfterFunc(time.Hour, c.fire)
	c.timer.Reset(time.Until(c.next(time.Now())))
	// A connection that ends is let go at once, not at its next slot.
	context.AfterFunc(conn.Context(), func() { c.timer.Stop() })
}

// pinged is one child of a pinger.
type pinged struct {
	p      *pinger
	conn   *quic.Conn
	offset time.Duration // its slot's, into each period
	timer  *time.Timer
}

// next is the child's first slot after t.
func (c *pinged) next(t time.Time) time.Time {
	d := t.Sub(c.p.epoch) - c.offset
	k := d / c.p.period
	if d >= 0 {
		k++
	}
	return c.p.epoch.Add(c.offset + k*c.p.period)
}

// fire pings the child, and sets the timer for its next slot. Only one
// runs at a time for a child: the timer is reset at its end. Once the
// connection has ended, SendDatagram fails and the timer is not set
// again (a fire that began before the end may set it once more, for one
// last fire that does nothing).
func (c *pinged) fire() {
	if err := c.conn.SendDatagram(nil); err != nil {
		return
	}
	c.timer.Reset(time.Until(c.next(time.Now())))
}
