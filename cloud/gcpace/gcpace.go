// Package gcpace starts a process's garbage collections early, half way
// from the heap the last one left live to the heap goal. It is for the
// processes that run with GOGC off under a memory limit and hold a large
// heap of long-lived tunnels: the tunnel shards, the controller, the
// load generator's workers.
//
// Left to itself, such a process starts a collection only once its heap
// is within a few tens of megabytes of the limit's goal, or already past
// it: a shard holding about 12k tunnels began one at 1,918 MB against a
// goal of 1,872, and a load generator's worker holding 20k at 1,002 MB
// against 1,033. Between those late collections the heap fills up to its
// bound. Started half way, no collection starts past its goal, and the
// processes stay further from their bounds: at 51k tunnels held, the
// machine had 9.3 GB available, against 3.5 GB without.
//
// It does not stop the goroutines that allocate during marking from
// doing much of it (assists): each one that allocates takes on at least
// 64 KB of marking, whatever the room left, and a process holding tens
// of thousands of tunnels has a goroutine or two per tunnel. Most early
// collections still spent as much time in assists as in background
// marking, or more. And a process collects about twice as often.
package gcpace

import (
	"context"
	"log/slog"
	"runtime"
	"runtime/metrics"
	"time"
)

// minGrowth is the least growth an early collection waits for: in a heap
// whose live part is close to its goal, the runtime's own collections
// come often enough.
const minGrowth = 64 << 20

// The runtime/metrics samples Run reads.
const (
	objectsMetric = "/memory/classes/heap/objects:bytes" // live and not yet swept
	liveMetric    = "/gc/heap/live:bytes"                // marked live by the last collection
	goalMetric    = "/gc/heap/goal:bytes"
)

// Run looks at the heap every interval and collects when it is due
// (due), until ctx ends; it returns nil then. A collection it starts
// runs as the runtime's do, concurrently, and Run waits for it.
func Run(ctx context.Context, every time.Duration, log *slog.Logger) error {
	samples := []metrics.Sample{{Name: objectsMetric}, {Name: liveMetric}, {Name: goalMetric}}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		metrics.Read(samples)
		objects, live, goal := samples[0].Value.Uint64(), samples[1].Value.Uint64(), samples[2].Value.Uint64()
		if !due(objects, live, goal) {
			continue
		}
		start := time.Now()
		runtime.GC()
		log.Debug("collected early", "heap", objects, "live", live, "goal", goal, "took", time.Since(start))
	}
}

// due reports whether a heap of objects bytes is due for a collection,
// with live bytes left live by the last one and a goal of goal: once it
// has grown half way from live to goal, by minGrowth at least.
func due(objects, live, goal uint64) bool {
	if goal <= live || objects <= live {
		return false
	}
	grown := objects - live
	return grown >= (goal-live)/2 && grown >= minGrowth
}
