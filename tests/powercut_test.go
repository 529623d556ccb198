package tests

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/ote-edge/ote/appliance/state"
)

// The tree is killed with SIGKILL 50 times in the middle of a write loop.
// After every restart the state service opens its file cleanly and every
// write it acknowledged is there.
func TestPowerCutKeepsAcknowledgedWrites(t *testing.T) {
	rounds := 50
	if testing.Short() {
		rounds = 5
	}
	root := t.TempDir()
	socket := filepath.Join(root, "run", "state.sock")
	acked := make([]int, rounds) // the last value acknowledged for round i's key
	key := func(i int) state.Key[int] { return state.Key[int](fmt.Sprintf("powercut/%03d", i)) }

	for round := range rounds {
		b := startBox(t, root)
		store, err := state.Dial(socket)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)

		// The state service is up once a read succeeds; then check every
		// earlier round.
		for {
			if _, err := store.Revision(ctx); err == nil {
				break
			} else if ctx.Err() != nil {
				t.Fatalf("round %d: state never answered: %v\n%s", round, err, b.console.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
		for i := range round {
			got, _, err := state.Get(ctx, store, key(i))
			// A write in flight at the kill may have landed too, so the
			// stored value can be one past the acknowledged one.
			if err != nil || got < acked[i] || got > acked[i]+1 {
				t.Fatalf("round %d: key of round %d = %d, %v; acknowledged %d", round, i, got, err, acked[i])
			}
		}

		// Write until a random moment, then cut the power: SIGKILL to
		// ote init, whose children die with it.
		cut := time.Now().Add(time.Duration(50+rand.IntN(250)) * time.Millisecond)
		for v := 1; time.Now().Before(cut); v++ {
			if _, err := state.Put(ctx, store, key(round), v); err != nil {
				t.Fatalf("round %d: put %d: %v", round, v, err)
			}
			acked[round] = v
		}
		wctx, wcancel := context.WithCancel(ctx)
		writing := make(chan struct{})
		go func() { // keep writing while the kill lands
			defer close(writing)
			for v := acked[round] + 1; wctx.Err() == nil; v++ {
				if _, err := state.Put(wctx, store, key(round), v); err != nil {
					return
				}
				acked[round] = v
			}
		}()
		time.Sleep(5 * time.Millisecond)
		b.cmd.Process.Signal(syscall.SIGKILL)
		<-b.exited
		wcancel()
		<-writing
		store.Close()
		cancel()
		if acked[round] == 0 {
			t.Fatalf("round %d: no write was acknowledged", round)
		}
		waitGone(t, socket)
	}
}

// waitGone waits until nothing answers on the old state socket, so the
// next round starts against a fresh state service.
func waitGone(t *testing.T, socket string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if !dialable(socket) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("the state service on %s outlived ote init's SIGKILL", socket)
}
