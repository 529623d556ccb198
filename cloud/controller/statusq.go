package controller

import (
	"context"
	"log/slog"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// statusQueue writes EdgeCluster status for the connected children with a
// few workers. A child's own goroutines only queue fields: they stay off
// the API client, which bounds the requests in flight and keeps their
// stacks small, however many children there are. Fields queued for a
// cluster merge, the later value of a field winning, and a cluster is
// written by one worker at a time, so writes land in the order queued.
// A write that fails is retried a second later under any newer fields;
// one for a cluster whose EdgeCluster is gone is dropped.
type statusQueue struct {
	write func(ctx context.Context, name string, fields map[string]any) error
	log   *slog.Logger

	mu      sync.Mutex
	cond    *sync.Cond
	pending map[string]map[string]any
	order   []string // clusters with pending fields, oldest first
	busy    map[string]bool
	stopped bool
}

func newStatusQueue(write func(context.Context, string, map[string]any) error, log *slog.Logger) *statusQueue {
	q := &statusQueue{write: write, log: log, pending: map[string]map[string]any{}, busy: map[string]bool{}}
	q.cond = sync.NewCond(&q.mu)
	return q
}

// set queues fields for a cluster's status.
func (q *statusQueue) set(name string, fields map[string]any) {
	q.mu.Lock()
	defer q.mu.Unlock()
	p, ok := q.pending[name]
	if !ok {
		p = make(map[string]any, len(fields))
		q.pending[name] = p
		if !q.busy[name] {
			q.order = append(q.order, name)
			q.cond.Signal()
		}
	}
	for k, v := range fields {
		p[k] = v
	}
}

// take returns the next cluster to write and its fields, waiting for one
// if wait and not stopped; ok is false when there is none.
func (q *statusQueue) take(wait bool) (name string, fields map[string]any, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for {
		for len(q.order) > 0 {
			name, q.order = q.order[0], q.order[1:]
			fields, queued := q.pending[name]
			if !queued || q.busy[name] {
				continue // in line twice; or in line again once written
			}
			delete(q.pending, name)
			q.busy[name] = true
			return name, fields, true
		}
		if !wait || q.stopped {
			return "", nil, false
		}
		q.cond.Wait()
	}
}

// done ends a cluster's write. Fields queued meanwhile go in line now; a
// failed write's fields wait, under them, for requeue.
func (q *statusQueue) done(name string, fields map[string]any, err error) (retry bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.busy, name)
	p, queued := q.pending[name]
	if err != nil && !apierrors.IsNotFound(err) {
		if !queued {
			p = map[string]any{}
			q.pending[name] = p
		}
		for k, v := range fields {
			if _, newer := p[k]; !newer {
				p[k] = v
			}
		}
		return true
	}
	if queued {
		q.order = append(q.order, name)
		q.cond.Signal()
	}
	return false
}

// requeue puts a cluster whose write failed back in line.
func (q *statusQueue) requeue(name string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if _, ok := q.pending[name]; ok && !q.busy[name] {
		q.order = append(q.order, name)
		q.cond.Signal()
	}
}

// run writes with workers until ctx ends.
func (q *statusQueue) run(ctx context.Context, workers int) {
	stop := context.AfterFunc(ctx, func() {
		q.mu.Lock()
		q.stopped = true
		q.cond.Broadcast()
		q.mu.Unlock()
	})
	defer stop()
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				name, fields, ok := q.take(true)
				if !ok {
					return
				}
				q.writeOne(ctx, name, fields)
			}
		})
	}
	wg.Wait()
}

func (q *statusQueue) writeOne(ctx context.Context, name string, fields map[string]any) {
	err := q.write(ctx, name, fields)
	if q.done(name, fields, err) {
		if ctx.Err() == nil {
			q.log.Warn("status", "cluster", name, "err", err)
		}
		time.AfterFunc(time.Second, func() { q.requeue(name) })
	}
}

// flush writes what is still queued, one cluster at a time, until done
// or within ends: at shutdown, after the workers stopped.
func (q *statusQueue) flush(within time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	q.mu.Lock()
	q.order = q.order[:0]
	for name := range q.pending { // failed writes waiting for requeue too
		q.order = append(q.order, name)
	}
	q.mu.Unlock()
	for ctx.Err() == nil {
		name, fields, ok := q.take(false)
		if !ok {
			return
		}
		q.done(name, fields, q.write(ctx, name, fields))
	}
}
