package gcpace

import (
	"context"
	"log/slog"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"testing"
	"time"
)

func TestDue(t *testing.T) {
	const mb = 1 << 20
	for _, c := range []struct {
		objects, live, goal uint64
		want                bool
	}{
		{objects: 1000 * mb, live: 1000 * mb, goal: 2000 * mb, want: false}, // just collected
		{objects: 1499 * mb, live: 1000 * mb, goal: 2000 * mb, want: false},
		{objects: 1500 * mb, live: 1000 * mb, goal: 2000 * mb, want: true}, // half way
		{objects: 1990 * mb, live: 1000 * mb, goal: 2000 * mb, want: true},
		{objects: 1060 * mb, live: 1000 * mb, goal: 1100 * mb, want: false}, // past half, under minGrowth
		{objects: 1070 * mb, live: 1000 * mb, goal: 1100 * mb, want: true},
		{objects: 900 * mb, live: 1000 * mb, goal: 2000 * mb, want: false},  // swept below live
		{objects: 1200 * mb, live: 1000 * mb, goal: 1000 * mb, want: false}, // goal at the live heap: the runtime's
	} {
		if got := due(c.objects, c.live, c.goal); got != c.want {
			t.Errorf("due(%d MB, live %d MB, goal %d MB) = %v, want %v", c.objects/mb, c.live/mb, c.goal/mb, got, c.want)
		}
	}
}

// TestRunCollectsBeforeTheRuntime: under GOGC off and a memory limit,
// with garbage made far past the limit, every collection is Run's (a
// forced one): the heap never reaches the point where the runtime
// would start one of its own.
func TestRunCollectsBeforeTheRuntime(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(512 << 20))
	runtime.GC()
	live := make([][]byte, 64) // 64 MB that stays live
	for i := range live {
		live[i] = make([]byte, 1<<20)
	}
	cycles := func() (forced, automatic uint64) {
		s := []metrics.Sample{{Name: "/gc/cycles/forced:gc-cycles"}, {Name: "/gc/cycles/automatic:gc-cycles"}}
		metrics.Read(s)
		return s[0].Value.Uint64(), s[1].Value.Uint64()
	}
	forced0, automatic0 := cycles()

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := Run(ctx, 5*time.Millisecond, slog.New(slog.DiscardHandler)); err != nil {
			t.Error(err)
		}
	})
	var sink []byte
	for i := range 2048 { // 2 GB of garbage, 2 MB a millisecond at most
		sink = make([]byte, 1<<20)
		sink[0] = 1
		if i%2 == 1 {
			time.Sleep(time.Millisecond)
		}
	}
	cancel()
	wg.Wait()
	runtime.KeepAlive(live)

	forced, automatic := cycles()
	if forced-forced0 < 3 {
		t.Errorf("Run collected %d times over 2 GB of garbage under a 512 MB limit, want 3 or more", forced-forced0)
	}
	if automatic != automatic0 {
		t.Errorf("the runtime collected %d times of its own: Run did not collect early enough", automatic-automatic0)
	}
}
