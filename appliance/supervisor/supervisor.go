package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/ote-edge/ote/appliance/backoff"
)

// Config configures a Supervisor. Zero values take the defaults named.
type Config struct {
	Services []Service
	Runner   Runner       // default &ExecRunner{}
	Log      *slog.Logger // default discards
	// Console receives every output line prefixed with "name: "; nil
	// means none.
	Console io.Writer
	// Env is the environment each service starts with, before its own
	// Service.Env; default os.Environ().
	Env      []string
	LogLines int // lines kept per service, default 500
	// Backoff is the restart delay; default 250ms doubling to 30s, ±20%.
	Backoff backoff.Backoff
	// StableAfter is how long a run must last to reset the backoff;
	// default 10s.
	StableAfter time.Duration
	// CrashLoopAfter is how many quick failures in a row mark a service
	// as crash-looping; default 5.
	CrashLoopAfter int
	StopGrace      time.Duration // SIGTERM to SIGKILL, default 10s
	ProbeInterval  time.Duration // default 100ms
	// Cgroups, when set, gives each service a cgroup v2 with its limits.
	Cgroups *Cgroups
}

// State is where a service is in its life.
type State string

// Service states.
const (
	StateWaiting  State = "waiting"  // for its dependencies to be ready
	StateStarting State = "starting" // running, not ready yet
	StateRunning  State = "running"  // running and ready
	StateBackoff  State = "backoff"  // exited, restarting after a delay
	StateExited   State = "exited"   // exited, and its policy says stay so
	StateFailed   State = "failed"   // exited with ExitNoRestart
	StateStopping State = "stopping" // being stopped
	StateStopped  State = "stopped"  // stopped by the supervisor
)

// Status is a snapshot of one service.
type Status struct {
	Name      string      `json:"name"`
	State     State       `json:"state"`
	CrashLoop bool        `json:"crashLoop"`
	Pid       int         `json:"pid,omitempty"`
	Started   time.Time   `json:"started,omitzero"` // start of the current or last run
	Restarts  int         `json:"restarts"`
	LastExit  *ExitStatus `json:"lastExit,omitempty"`
	ExitedAt  time.Time   `json:"exitedAt,omitzero"`
	LastError string      `json:"lastError,omitempty"` // the latest start or probe error
	NextStart time.Time   `json:"nextStart,omitzero"`  // when in backoff
	After     []string    `json:"after,omitempty"`
	// From the service's cgroup, where there is one.
	MemoryBytes int64   `json:"memoryBytes,omitempty"`
	MemoryMax   int64   `json:"memoryMax,omitempty"`
	CPUSeconds  float64 `json:"cpuSeconds,omitempty"`
}

// Supervisor runs a table of services. Create it with New, run it with Run.
type Supervisor struct {
	cfg     Config
	units   []*unit // in start order
	byName  map[string]*unit
	console *syncWriter
}

// New validates the service table (unique names, known dependencies, no
// cycles, known policies) and returns a Supervisor ready to Run.
func New(cfg Config) (*Supervisor, error) {
	ordered, err := order(cfg.Services)
	if err != nil {
		return nil, err
	}
	if cfg.Runner == nil {
		cfg.Runner = &ExecRunner{}
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Env == nil {
		cfg.Env = os.Environ()
	}
	if cfg.LogLines == 0 {
		cfg.LogLines = 500
	}
	if cfg.Backoff.Min == 0 {
		cfg.Backoff = backoff.Backoff{Min: 250 * time.Millisecond, Max: 30 * time.Second, Jitter: 0.2}
	}
	if cfg.StableAfter == 0 {
		cfg.StableAfter = 10 * time.Second
	}
	if cfg.CrashLoopAfter == 0 {
		cfg.CrashLoopAfter = 5
	}
	if cfg.StopGrace == 0 {
		cfg.StopGrace = 10 * time.Second
	}
	if cfg.ProbeInterval == 0 {
		cfg.ProbeInterval = 100 * time.Millisecond
	}
	s := &Supervisor{cfg: cfg, byName: make(map[string]*unit)}
	if cfg.Console != nil {
		s.console = &syncWriter{w: cfg.Console}
	}
	for _, svc := range ordered {
		u := &unit{
			sup:        s,
			svc:        svc,
			ring:       NewRing(cfg.LogLines),
			ready:      make(chan struct{}),
			stop:       make(chan struct{}),
			stopped:    make(chan struct{}),
			restartReq: make(chan struct{}, 1),
			st:         Status{Name: svc.Name, State: StateWaiting, After: svc.After, MemoryMax: svc.MemoryMax},
		}
		s.units = append(s.units, u)
		s.byName[svc.Name] = u
	}
	return s, nil
}

// Run starts every service in dependency order and supervises them until
// ctx ends, then stops them in reverse order: a service stops only after
// everything that depends on it has stopped. It returns once all have.
func (s *Supervisor) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, u := range s.units {
		wg.Go(u.loop)
	}
	<-ctx.Done()
	s.cfg.Log.Info("stopping services")
	for _, u := range s.units {
		wg.Go(func() {
			for _, d := range s.units {
				if d.dependsOn(u.svc.Name) {
					<-d.stopped
				}
			}
			close(u.stop)
		})
	}
	wg.Wait()
	return nil
}

// Status returns a snapshot of every service, in start order.
func (s *Supervisor) Status() []Status {
	out := make([]Status, 0, len(s.units))
	for _, u := range s.units {
		st := u.status()
		if s.cfg.Cgroups != nil {
			st.MemoryBytes, st.CPUSeconds = s.cfg.Cgroups.usage(u.svc.Name)
		}
		out = append(out, st)
	}
	return out
}

// ErrUnknownService is returned for a name that is not in the table.
var ErrUnknownService = errors.New("unknown service")

// Restart stops a service's current run, if any, and starts it again at
// once, resetting its backoff.
func (s *Supervisor) Restart(name string) error {
	u, ok := s.byName[name]
	if !ok {
		return fmt.Errorf("%w %q", ErrUnknownService, name)
	}
	select {
	case u.restartReq <- struct{}{}:
	default: // a restart is already pending
	}
	return nil
}

// Logs returns the ring of a service's recent output lines.
func (s *Supervisor) Logs(name string) (*Ring, error) {
	u, ok := s.byName[name]
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrUnknownService, name)
	}
	return u.ring, nil
}

// Ready returns a channel closed once the named service has first become
// ready, or nil for an unknown name.
func (s *Supervisor) Ready(name string) <-chan struct{} {
	if u, ok := s.byName[name]; ok {
		return u.ready
	}
	return nil
}

// syncWriter serialises writes of whole lines from many services.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(p)
}

// killWait bounds how long a killed group may take to be gone. SIGKILL
// cannot be caught, so only a process in uninterruptible sleep (a hung
// disk or mount), or an orphan that nobody reaps, outlasts it.
const killWait = 5 * time.Second

// signalGroupAndWait asks p's group to stop with SIGTERM, gives it grace
// to exit (leader and every other member), then kills what is left.
func signalGroupAndWait(p Process, grace time.Duration) error {
	deadline := time.NewTimer(grace)
	defer deadline.Stop()
	p.Signal(syscall.SIGTERM)
	select {
	case <-p.Done():
		// The leader is gone; the rest of its group gets what is left
		// of the grace period.
		groupGone(p, deadline.C)
	case <-deadline.C:
	}
	return killGroup(p)
}

// killGroup kills p's whole group and waits until none of it is left: the
// leader reaped and every other member gone. A member that is still
// there after killWait is reported, not waited for any longer.
func killGroup(p Process) error {
	p.Signal(syscall.SIGKILL)
	<-p.Done()
	limit := time.NewTimer(killWait)
	defer limit.Stop()
	if !groupGone(p, limit.C) {
		return fmt.Errorf("process group %d still has members %v after SIGKILL", p.Pid(), killWait)
	}
	return nil
}

// groupGone waits until no member of p's group is left, and reports
// false if deadline comes first.
func groupGone(p Process, deadline <-chan time.Time) bool {
	poll := time.NewTicker(10 * time.Millisecond)
	defer poll.Stop()
	for p.Signal(0) == nil {
		select {
		case <-poll.C:
		case <-deadline:
			return false
		}
	}
	return true
}
