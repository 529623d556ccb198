package backoff

import (
	"context"
	"testing"
	"testing/synctest"
	"time"
)

func TestNextDoublesToMax(t *testing.T) {
	b := Backoff{Min: 100 * time.Millisecond, Max: time.Second}
	want := []time.Duration{100, 200, 400, 800, 1000, 1000}
	for i, w := range want {
		if got := b.Next(); got != w*time.Millisecond {
			t.Errorf("Next() #%d = %v, want %v", i, got, w*time.Millisecond)
		}
	}
	b.Reset()
	if got := b.Next(); got != 100*time.Millisecond {
		t.Errorf("Next() after Reset = %v, want 100ms", got)
	}
}

func TestJitterStaysInBounds(t *testing.T) {
	for _, r := range []float64{0, 0.5, 0.999} {
		b := Backoff{Min: time.Second, Max: time.Second, Jitter: 0.2, Rand: func() float64 { return r }}
		got := b.Next()
		if got < 800*time.Millisecond || got > 1200*time.Millisecond {
			t.Errorf("Next() with rand %v = %v, want within 1s ±20%%", r, got)
		}
	}
}

func TestManyAttemptsDoNotOverflow(t *testing.T) {
	b := Backoff{Min: time.Second, Max: time.Minute}
	for range 10000 {
		b.Next()
	}
	if got := b.Next(); got != time.Minute {
		t.Errorf("Next() after 10000 attempts = %v, want %v", got, time.Minute)
	}
}

func TestWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := Backoff{Min: time.Second, Max: time.Minute}
		start := time.Now()
		if err := b.Wait(context.Background()); err != nil {
			t.Fatal(err)
		}
		if got := time.Since(start); got != time.Second {
			t.Errorf("first Wait slept %v, want 1s", got)
		}

		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		start = time.Now()
		if err := b.Wait(ctx); err != context.DeadlineExceeded {
			t.Errorf("Wait with a 500ms context = %v, want %v", err, context.DeadlineExceeded)
		}
		if got := time.Since(start); got != 500*time.Millisecond {
			t.Errorf("cancelled Wait returned after %v, want 500ms", got)
		}
	})
}
