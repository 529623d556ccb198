package supervisor

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ote-edge/ote/appliance/backoff"
)

// fakeProc is a process living only inside the test's bubble.
type fakeProc struct {
	pid        int
	done       chan struct{}
	exit       ExitStatus
	once       sync.Once
	ignoreTerm bool
	onExit     func()
}

func (p *fakeProc) Pid() int              { return p.pid }
func (p *fakeProc) Done() <-chan struct{} { return p.done }
func (p *fakeProc) Exit() ExitStatus      { <-p.done; return p.exit }

func (p *fakeProc) finish(e ExitStatus) {
	p.once.Do(func() {
		p.exit = e
		p.onExit()
		close(p.done)
	})
}

func (p *fakeProc) Signal(sig syscall.Signal) error {
	select {
	case <-p.done:
		return syscall.ESRCH
	default:
	}
	switch {
	case sig == 0:
	case sig == syscall.SIGTERM && p.ignoreTerm:
	default:
		p.finish(ExitStatus{Code: -1, Signal: sig})
	}
	return nil
}

// fakeRunner starts fakeProcs; behave decides, per service name and start
// number, what each one does.
type fakeRunner struct {
	mu     sync.Mutex
	pid    int
	starts map[string][]time.Duration // since t0
	events []string
	t0     time.Time
	behave func(name string, n int, p *fakeProc, spec StartSpec)
}

func newFakeRunner(behave func(name string, n int, p *fakeProc, spec StartSpec)) *fakeRunner {
	return &fakeRunner{starts: map[string][]time.Duration{}, t0: time.Now(), behave: behave}
}

func (r *fakeRunner) Start(spec StartSpec) (Process, error) {
	r.mu.Lock()
	name := spec.Argv[0]
	r.pid++
	p := &fakeProc{pid: r.pid, done: make(chan struct{}), onExit: func() {
		r.mu.Lock()
		r.events = append(r.events, "exit "+name)
		r.mu.Unlock()
	}}
	n := len(r.starts[name])
	r.starts[name] = append(r.starts[name], time.Since(r.t0))
	r.events = append(r.events, "start "+name)
	r.mu.Unlock()
	r.behave(name, n, p, spec)
	return p, nil
}

func (r *fakeRunner) startTimes(name string) []time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]time.Duration(nil), r.starts[name]...)
}

func (r *fakeRunner) eventLog() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.events, ", ")
}

// exitAfter makes p exit with code after d.
func exitAfter(p *fakeProc, d time.Duration, code int) {
	go func() {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
			p.finish(ExitStatus{Code: code})
		case <-p.done:
		}
	}()
}

// readyAfter is a probe that passes once d has passed since its creation.
type readyAfter struct{ at time.Time }

func (p readyAfter) Check(context.Context, Runner) error {
	if time.Now().Before(p.at) {
		return errors.New("not yet")
	}
	return nil
}
func (p readyAfter) String() string { return "ready-after" }

func service(name string, after ...string) Service {
	return Service{Name: name, Argv: []string{name}, After: after}
}

func testConfig(r Runner, services ...Service) Config {
	return Config{
		Services: services,
		Runner:   r,
		Backoff:  backoff.Backoff{Min: 250 * time.Millisecond, Max: 4 * time.Second},
	}
}

// runFor runs s until d has passed, then stops it and waits.
func runFor(t *testing.T, s *Supervisor, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if err := s.Run(ctx); err != nil {
		t.Fatalf("Run: %v", err)
	}
}

func mustNew(t *testing.T, cfg Config) *Supervisor {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

func TestStartsInDependencyOrderAndStopsInReverse(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newFakeRunner(func(string, int, *fakeProc, StartSpec) {})
		b := service("b", "a")
		b.Ready = readyAfter{at: time.Now().Add(3 * time.Second)}
		s := mustNew(t, testConfig(r, service("c", "b"), b, service("a")))
		runFor(t, s, 10*time.Second)

		for name, want := range map[string]time.Duration{"a": 0, "b": 0, "c": 3 * time.Second} {
			got := r.startTimes(name)
			if len(got) != 1 || got[0] < want || got[0] > want+200*time.Millisecond {
				t.Errorf("%s started at %v, want once at %v (after its dependencies were ready)", name, got, want)
			}
		}
		if got, want := r.eventLog(), "start a, start b, start c, exit c, exit b, exit a"; got != want {
			t.Errorf("events = %q, want %q", got, want)
		}
		for _, st := range s.Status() {
			if st.State != StateStopped || st.LastExit == nil || st.LastExit.Signal != syscall.SIGTERM {
				t.Errorf("after Run: %s is %s, last exit %v; want stopped by SIGTERM", st.Name, st.State, st.LastExit)
			}
		}
	})
}

func TestCrashingServiceBacksOffAndIsMarkedCrashLooping(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newFakeRunner(func(_ string, _ int, p *fakeProc, _ StartSpec) { p.finish(ExitStatus{Code: 1}) })
		s := mustNew(t, testConfig(r, service("crash")))
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { s.Run(ctx); close(done) }()

		time.Sleep(10 * time.Second)
		synctest.Wait()
		st := s.Status()[0]
		cancel()
		<-done

		// 250ms, 500ms, 1s, 2s, then the 4s cap: starts at 0, .25, .75, 1.75, 3.75, 7.75.
		want := []time.Duration{0, 250, 750, 1750, 3750, 7750}
		got := r.startTimes("crash")
		if len(got) != len(want) {
			t.Fatalf("starts = %v, want %d starts at %v ms", got, len(want), want)
		}
		for i := range want {
			if got[i] != want[i]*time.Millisecond {
				t.Errorf("start %d at %v, want %v", i, got[i], want[i]*time.Millisecond)
			}
		}
		if st.State != StateBackoff || !st.CrashLoop || st.Restarts != 5 || st.LastExit.Code != 1 {
			t.Errorf("status = %+v, want backoff, crash-looping, 5 restarts, last exit 1", st)
		}
	})
}

func TestStableRunResetsBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newFakeRunner(func(_ string, n int, p *fakeProc, _ StartSpec) {
			if n < 3 {
				p.finish(ExitStatus{Code: 1})
			} else {
				exitAfter(p, 20*time.Second, 1) // a stable run, then a crash
			}
		})
		s := mustNew(t, testConfig(r, service("svc")))
		runFor(t, s, 25*time.Second)
		got := r.startTimes("svc")
		// 0, .25, .75 fail fast; 1.75 runs 20s; the restart after it waits
		// Min again, not 2s.
		if len(got) < 5 || got[4]-got[3] != 20*time.Second+250*time.Millisecond {
			t.Errorf("starts = %v; want the start after a 20s run 250ms after its exit", got)
		}
	})
}

func TestExitPolicies(t *testing.T) {
	tests := []struct {
		policy Restart
		code   int
		state  State
		starts int
	}{
		{RestartAlways, ExitNoRestart, StateFailed, 1},
		{RestartOnFailure, ExitNoRestart, StateFailed, 1},
		{RestartNever, 1, StateExited, 1},
		{RestartOnFailure, 0, StateExited, 1},
		// Runs of 1s start at 0, 1.25, 2.75 and 4.75; at 7.5s the fourth
		// has exited and the fifth waits for its 2s delay.
		{RestartOnFailure, 2, StateBackoff, 4},
		{RestartAlways, 0, StateBackoff, 4},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/%d", tt.policy, tt.code), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := newFakeRunner(func(_ string, _ int, p *fakeProc, _ StartSpec) { exitAfter(p, time.Second, tt.code) })
				svc := service("svc")
				svc.Restart = tt.policy
				s := mustNew(t, testConfig(r, svc))
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan struct{})
				go func() { s.Run(ctx); close(done) }()
				time.Sleep(7500 * time.Millisecond)
				synctest.Wait()
				st := s.Status()[0]
				cancel()
				<-done
				if st.State != tt.state || len(r.startTimes("svc")) != tt.starts {
					t.Errorf("exit %d under %s: state %s after %d starts, want %s after %d", tt.code, tt.policy, st.State, len(r.startTimes("svc")), tt.state, tt.starts)
				}
			})
		})
	}
}

func TestStopKillsAGroupThatIgnoresSIGTERM(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newFakeRunner(func(_ string, _ int, p *fakeProc, _ StartSpec) { p.ignoreTerm = true })
		cfg := testConfig(r, service("stubborn"))
		cfg.StopGrace = 3 * time.Second
		s := mustNew(t, cfg)
		start := time.Now()
		runFor(t, s, time.Second)
		if got := time.Since(start); got != 4*time.Second {
			t.Errorf("Run returned %v after start; want 1s run + 3s grace", got)
		}
		if st := s.Status()[0]; st.LastExit == nil || st.LastExit.Signal != syscall.SIGKILL {
			t.Errorf("last exit = %v, want killed by SIGKILL", st.LastExit)
		}
	})
}

func TestRestartRequest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newFakeRunner(func(string, int, *fakeProc, StartSpec) {})
		s := mustNew(t, testConfig(r, service("svc")))
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { s.Run(ctx); close(done) }()
		time.Sleep(2 * time.Second)
		if err := s.Restart("svc"); err != nil {
			t.Fatal(err)
		}
		if err := s.Restart("nope"); !errors.Is(err, ErrUnknownService) {
			t.Errorf("Restart(nope) = %v, want ErrUnknownService", err)
		}
		time.Sleep(time.Second)
		synctest.Wait()
		st := s.Status()[0]
		cancel()
		<-done
		if got := r.startTimes("svc"); len(got) != 2 || got[1] != 2*time.Second {
			t.Errorf("starts = %v, want a second start right at the request (2s)", got)
		}
		if st.State != StateRunning || st.Restarts != 1 {
			t.Errorf("after restart: %s with %d restarts, want running with 1", st.State, st.Restarts)
		}
	})
}

func TestOutputGoesToRingAndConsole(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newFakeRunner(func(_ string, _ int, p *fakeProc, spec StartSpec) {
			fmt.Fprint(spec.Stdout, "hello\nwor")
			fmt.Fprint(spec.Stdout, "ld\n")
			fmt.Fprint(spec.Stderr, "oops\r\n")
		})
		var console strings.Builder
		cfg := testConfig(r, service("talker"))
		cfg.Console = &console
		s := mustNew(t, cfg)
		runFor(t, s, time.Second)
		ring, _ := s.Logs("talker")
		var got []string
		for _, l := range ring.Tail(0) {
			if l.Stream != "supervisor" {
				got = append(got, l.Stream+":"+l.Text)
			}
		}
		if want := "stdout:hello stdout:world stderr:oops"; strings.Join(got, " ") != want {
			t.Errorf("ring = %q, want %q", got, want)
		}
		if !strings.Contains(console.String(), "talker: world\n") {
			t.Errorf("console = %q, want prefixed lines", console.String())
		}
	})
}

func TestNewRejectsBadTables(t *testing.T) {
	tests := []struct {
		services []Service
		want     string
	}{
		{[]Service{service("a", "b"), service("b", "a")}, "dependency cycle: a -> b -> a"},
		{[]Service{service("a", "ghost")}, `depends on unknown service "ghost"`},
		{[]Service{service("a"), service("a")}, `"a": declared twice`},
		{[]Service{{Name: "a"}}, `"a": empty argv`},
		{[]Service{{Name: "a/b", Argv: []string{"x"}}}, `bad name "a/b"`},
		{[]Service{{Name: "a", Argv: []string{"x"}, Restart: "sometimes"}}, `unknown restart policy "sometimes"`},
	}
	for _, tt := range tests {
		_, err := New(Config{Services: tt.services})
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("New(%v) = %v, want an error containing %q", tt.services, err, tt.want)
		}
	}
}
