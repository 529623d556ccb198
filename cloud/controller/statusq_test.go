package controller

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// recorder is a status writer that records its writes and can be made
// to block or fail.
type recorder struct {
	mu      sync.Mutex
	writes  []map[string]any
	names   []string
	active  map[string]int
	overlap bool
	gate    chan struct{} // when set, each write waits for a receive
	fail    map[string]error
}

func (r *recorder) write(_ context.Context, name string, fields map[string]any) error {
	r.mu.Lock()
	r.active[name]++
	if r.active[name] > 1 {
		r.overlap = true
	}
	gate := r.gate
	r.mu.Unlock()
	if gate != nil {
		<-gate
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.active[name]--
	if err := r.fail[name]; err != nil {
		delete(r.fail, name)
		return err
	}
	r.names = append(r.names, name)
	r.writes = append(r.writes, maps.Clone(fields))
	return nil
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.writes)
}

func waitCount(t *testing.T, r *recorder, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for r.count() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d writes, want %d: %v", r.count(), n, r.writes)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestStatusQueueMergesAndKeepsOrder(t *testing.T) {
	rec := &recorder{active: map[string]int{}, gate: make(chan struct{}), fail: map[string]error{}}
	q := newStatusQueue(rec.write, slog.New(slog.DiscardHandler))
	// Queued before any worker runs: one write, the later value winning.
	q.set("box-1", map[string]any{"phase": "Connected", "lastSeen": "t1"})
	q.set("box-1", map[string]any{"lastSeen": "t2", "desiredRevision": 3})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { q.run(ctx, 4); close(done) }()
	// While box-1's write is in flight, it disconnects: that write waits
	// for the first, however many workers are free.
	time.Sleep(20 * time.Millisecond)
	q.set("box-1", map[string]any{"phase": "Disconnected"})
	q.set("box-2", map[string]any{"phase": "Connected"})
	for range 3 {
		rec.gate <- struct{}{}
	}
	waitCount(t, rec, 3)
	cancel()
	<-done
	if rec.overlap {
		t.Error("two writes of one cluster overlapped")
	}
	var box1 []map[string]any
	for i, n := range rec.names {
		if n == "box-1" {
			box1 = append(box1, rec.writes[i])
		}
	}
	if len(box1) != 2 || box1[0]["phase"] != "Connected" || box1[0]["lastSeen"] != "t2" || box1[0]["desiredRevision"] != 3 || box1[1]["phase"] != "Disconnected" {
		t.Errorf("box-1's writes = %v; want the merged connect, then the disconnect", box1)
	}
}

func TestStatusQueueRetriesUnderNewerFields(t *testing.T) {
	rec := &recorder{active: map[string]int{}, fail: map[string]error{
		"box-1": errors.New("apiserver unavailable"),
		"gone":  apierrors.NewNotFound(schema.GroupResource{Resource: "edgeclusters"}, "gone"),
	}}
	q := newStatusQueue(rec.write, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { q.run(ctx, 2); close(done) }()
	q.set("gone", map[string]any{"phase": "Connected"})
	q.set("box-1", map[string]any{"phase": "Connected", "agentVersion": "v1"})
	time.Sleep(100 * time.Millisecond) // the first attempt fails meanwhile
	q.set("box-1", map[string]any{"phase": "Disconnected"})
	waitCount(t, rec, 1)
	cancel()
	<-done
	if len(rec.writes) != 1 || rec.names[0] != "box-1" || rec.writes[0]["phase"] != "Disconnected" || rec.writes[0]["agentVersion"] != "v1" {
		t.Errorf("writes = %v %v; want one for box-1: the newer phase over the failed write's other fields, and none for a cluster that is gone", rec.names, rec.writes)
	}
}

func TestStatusQueueFlushesAtShutdown(t *testing.T) {
	rec := &recorder{active: map[string]int{}, fail: map[string]error{}}
	q := newStatusQueue(rec.write, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	q.run(ctx, 2) // stopped at once
	q.set("box-1", map[string]any{"phase": "Disconnected"})
	q.set("box-2", map[string]any{"phase": "Disconnected"})
	q.flush(5 * time.Second)
	if rec.count() != 2 {
		t.Errorf("flush wrote %v, want both", rec.writes)
	}
}
