// Package backoff is the one retry delay used across OTE: exponential with
// jitter, capped, reset after success, and every wait honours its context.
// The supervisor uses it between restarts, the tunnel between reconnects.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Backoff yields growing delays: Min, then doubling up to Max, each spread
// by up to ±Jitter of itself so that many boxes restarting together do not
// retry in step. The zero value is not useful; fill Min and Max.
type Backoff struct {
	Min, Max time.Duration
	// Jitter is the fraction of each delay to randomise, in [0, 1).
	// Zero means no jitter.
	Jitter float64
	// Rand returns a number in [0, 1); nil means math/rand/v2.
	Rand func() float64

	attempt int
}

// Next returns the delay before the next attempt and advances the sequence.
func (b *Backoff) Next() time.Duration {
	d := b.Min
	for i := 0; i < b.attempt && d < b.Max; i++ {
		d *= 2
	}
	d = min(d, b.Max)
	b.attempt++
	if b.Jitter > 0 {
		r := rand.Float64
		if b.Rand != nil {
			r = b.Rand
		}
		spread := float64(d) * b.Jitter
		d += time.Duration(spread * (2*r() - 1))
	}
	return max(d, 0)
}

// Attempts is how many delays Next has handed out since the last Reset.
func (b *Backoff) Attempts() int { return b.attempt }

// Reset starts the sequence again at Min, after a success.
func (b *Backoff) Reset() { b.attempt = 0 }

// Wait sleeps for Next() or until ctx ends, whichever is first, and returns
// ctx's error in the latter case.
func (b *Backoff) Wait(ctx context.Context) error { return Sleep(ctx, b.Next()) }

// Sleep waits for d or until ctx ends, and returns ctx's error in the
// latter case: the one way to pause in a loop that must stop on time.
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
