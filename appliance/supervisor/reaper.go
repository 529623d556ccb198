package supervisor

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"
)

// Reaper waits for every child of the process, as PID 1 and subreapers
// must: orphans re-parented to us are reaped and forgotten, and the
// statuses of processes started through ExecRunner go to them.
type Reaper struct {
	log     *slog.Logger
	mu      sync.Mutex // held while starting a process and while reaping
	waiting map[int]*execProcess
}

// NewReaper returns a Reaper; call Run to start reaping.
func NewReaper(log *slog.Logger) *Reaper {
	return &Reaper{log: log, waiting: make(map[int]*execProcess)}
}

// start runs fn, which starts p, and registers p before any reap can see
// its exit.
func (r *Reaper) start(p *execProcess, fn func() error) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := fn(); err != nil {
		return err
	}
	r.waiting[p.pid] = p
	return nil
}

// Run reaps children on every SIGCHLD until ctx ends. A slow tick catches
// signals coalesced or missed while no handler was installed.
func (r *Reaper) Run(ctx context.Context) error {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGCHLD)
	defer signal.Stop(sigs)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		r.reap()
		select {
		case <-ctx.Done():
			return nil
		case <-sigs:
		case <-tick.C:
		}
	}
}

func (r *Reaper) reap() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if err == syscall.EINTR {
			continue
		}
		if pid <= 0 || err != nil {
			return
		}
		if p, ok := r.waiting[pid]; ok {
			delete(r.waiting, pid)
			p.finish(ws)
			continue
		}
		r.log.Debug("reaped orphan", "pid", pid, "status", exitStatus(ws).String())
	}
}
