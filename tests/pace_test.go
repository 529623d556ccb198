package tests

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// dialPacer hands a load generator's dialers their dials at a rate it
// adapts to the machine's CPU: up by a step each second while the share
// of busy CPU stays under the ceiling, down by a third when it does not,
// to no less than a tenth of a step: one dial a second for a lone pacer,
// and no more for the several pacers of a load generator split into
// processes, whose steps add up to one pacer's.
// The load generator runs on the same cores as the controller and its
// API server. Dialing as fast as handshakes complete keeps every core
// busy, and on a saturated machine each garbage collection of a
// many-gigabyte heap stalls the tunnels already held for longer than a
// box waits before it calls its parent lost. A real fleet does not arrive
// in one burst either: boxes come up over time, and reconnect with a
// jittered backoff.
type dialPacer struct {
	ceiling float64       // the busy share of all CPUs to stay under, (0, 1)
	step    float64       // dials per second added each second under it
	tokens  chan struct{} // one per dial
	stopped chan struct{} // closed when Run returns: dials go unpaced
	logf    func(format string, args ...any)
}

func newDialPacer(ceiling, step float64, logf func(string, ...any)) *dialPacer {
	return &dialPacer{ceiling: ceiling, step: step, tokens: make(chan struct{}), stopped: make(chan struct{}), logf: logf}
}

// wait blocks until the next dial may go, or ctx ends. A nil pacer does
// not pace.
func (p *dialPacer) wait(ctx context.Context) error {
	if p == nil {
		return nil
	}
	select {
	case <-p.tokens:
		return nil
	case <-p.stopped:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Run hands out dials until ctx ends, logging its rate once a minute.
func (p *dialPacer) Run(ctx context.Context) error {
	defer close(p.stopped)
	rate := 5 * p.step
	busy, total, err := cpuTicks()
	if err != nil {
		return err
	}
	adjust := time.NewTicker(time.Second)
	defer adjust.Stop()
	next := time.Now()
	lastLog, given, share := next, 0, 0.0
	wait := time.NewTimer(0)
	defer wait.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-adjust.C:
			b, t, err := cpuTicks()
			if err != nil {
				return err
			}
			if t > total {
				share = float64(b-busy) / float64(t-total)
			}
			busy, total = b, t
			rate = p.adjust(rate, share)
			if time.Since(lastLog) >= time.Minute {
				p.logf("pacer: %d dials in the last minute, now %.0f/s at %.0f%% CPU busy", given, rate, 100*share)
				lastLog, given = time.Now(), 0
			}
		case <-wait.C:
			select {
			case p.tokens <- struct{}{}:
				given++
			case <-ctx.Done():
				return nil
			}
			// Time when no dialer waited is not saved up: at most a tenth
			// of a second's dials go in a burst.
			next = next.Add(time.Duration(float64(time.Second) / rate))
			if floor := time.Now().Add(-time.Second / 10); next.Before(floor) {
				next = floor
			}
			wait.Reset(time.Until(next))
		}
	}
}

// adjust is the next second's rate, given the last second's busy share.
func (p *dialPacer) adjust(rate, share float64) float64 {
	if share < p.ceiling {
		return rate + p.step
	}
	return max(rate*2/3, p.step/10)
}

// cpuTicks reads the machine's busy and total CPU time, in ticks, from
// the first line of /proc/stat: idle and iowait are not busy; guest time
// is part of user time already.
func cpuTicks() (busy, total int64, err error) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	return parseCPUTicks(string(data))
}

// parseCPUTicks reads /proc/stat's text for cpuTicks.
func parseCPUTicks(stat string) (busy, total int64, err error) {
	line, _, _ := strings.Cut(stat, "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, 0, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	for i, s := range f[1:9] { // user nice system idle iowait irq softirq steal
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/stat: field %d: %w", i+1, err)
		}
		total += n
		if i != 3 && i != 4 {
			busy += n
		}
	}
	return busy, total, nil
}

func TestDialPacerAdjust(t *testing.T) {
	p := newDialPacer(0.8, 10, t.Logf)
	if got := p.adjust(50, 0.5); got != 60 {
		t.Errorf("under the ceiling: rate 50 became %v, want 60", got)
	}
	if got := p.adjust(60, 0.9); got != 40 {
		t.Errorf("over the ceiling: rate 60 became %v, want 40", got)
	}
	if got := p.adjust(1.2, 1); got != 1 {
		t.Errorf("over the ceiling at 1.2/s: %v, want the floor of 1", got)
	}
	p = newDialPacer(0.8, 2.5, t.Logf) // one of four processes' pacers
	if got := p.adjust(0.3, 1); got != 0.25 {
		t.Errorf("a step of 2.5, over the ceiling at 0.3/s: %v, want the floor of 0.25", got)
	}
}

func TestParseCPUTicks(t *testing.T) {
	busy, total, err := parseCPUTicks("cpu  100 5 50 800 20 3 2 0 7 0\ncpu0 1 2 3 4 5 6 7 8 9 0\n")
	if err != nil || busy != 160 || total != 980 {
		t.Errorf("got busy %d, total %d, %v; want 160, 980", busy, total, err)
	}
	for _, bad := range []string{"", "intr 1 2 3", "cpu 1 2 3", "cpu 1 2 x 4 5 6 7 8"} {
		if _, _, err := parseCPUTicks(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
	if busy, total, err := cpuTicks(); err != nil || total <= busy || total == 0 {
		t.Errorf("this machine: busy %d, total %d, %v", busy, total, err)
	}
}
