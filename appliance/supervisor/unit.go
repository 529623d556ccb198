package supervisor

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sync"
	"time"
)

// unit is one service under supervision.
type unit struct {
	sup  *Supervisor
	svc  Service
	ring *Ring

	ready      chan struct{} // closed at first readiness
	readyOnce  sync.Once
	stop       chan struct{} // closed to stop the service for good
	stopped    chan struct{} // closed when loop has returned
	restartReq chan struct{}

	mu sync.Mutex
	st Status
}

func (u *unit) stopGrace() time.Duration {
	if u.svc.StopGrace > 0 {
		return u.svc.StopGrace
	}
	return u.sup.cfg.StopGrace
}

func (u *unit) dependsOn(name string) bool { return slices.Contains(u.svc.After, name) }

func (u *unit) status() Status {
	u.mu.Lock()
	defer u.mu.Unlock()
	st := u.st
	st.After = slices.Clone(st.After)
	if st.LastExit != nil {
		e := *st.LastExit
		st.LastExit = &e
	}
	return st
}

func (u *unit) update(f func(st *Status)) {
	u.mu.Lock()
	defer u.mu.Unlock()
	f(&u.st)
}

// note records a supervisor event in the service's log and the journal.
func (u *unit) note(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	u.ring.Add(Line{Time: time.Now(), Stream: "supervisor", Text: msg})
	if c := u.sup.console; c != nil {
		fmt.Fprintf(c, "%s: [supervisor] %s\n", u.svc.Name, msg)
	}
	u.sup.cfg.Log.Info(msg, "service", u.svc.Name)
}

// loop runs the service until stop is closed.
func (u *unit) loop() {
	defer close(u.stopped)
	for _, d := range u.svc.After {
		select {
		case <-u.sup.byName[d].ready:
		case <-u.stop:
			u.update(func(st *Status) { st.State = StateStopped })
			return
		}
	}
	bo := u.sup.cfg.Backoff // each service backs off on its own
	for {
		exit, ran, end := u.runOnce()
		switch end {
		case endStopped:
			return
		case endRestart:
			bo.Reset()
			u.update(func(st *Status) { st.Restarts++ })
			continue
		}
		if ran >= u.sup.cfg.StableAfter {
			bo.Reset()
		}

		var restart bool
		switch {
		case exit.Code == ExitNoRestart:
			u.note("exited with status %d: not restarting", ExitNoRestart)
			u.update(func(st *Status) { st.State = StateFailed })
		case u.svc.restartPolicy() == RestartNever,
			u.svc.restartPolicy() == RestartOnFailure && exit.Success():
			u.note("%s: not restarting (policy %s)", exit, u.svc.restartPolicy())
			u.update(func(st *Status) { st.State = StateExited })
		default:
			restart = true
		}

		if restart {
			delay := bo.Next()
			crashLoop := bo.Attempts() >= u.sup.cfg.CrashLoopAfter
			u.note("%s: restarting in %v", exit, delay.Round(time.Millisecond))
			u.update(func(st *Status) {
				st.State, st.CrashLoop, st.NextStart = StateBackoff, crashLoop, time.Now().Add(delay)
			})
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-u.restartReq:
				t.Stop()
				bo.Reset()
			case <-u.stop:
				t.Stop()
				u.update(func(st *Status) { st.State, st.NextStart = StateStopped, time.Time{} })
				return
			}
		} else {
			select {
			case <-u.restartReq:
				bo.Reset()
			case <-u.stop:
				return
			}
		}
		u.update(func(st *Status) { st.Restarts++; st.NextStart = time.Time{} })
	}
}

// runEnd says why a run ended.
type runEnd int

const (
	endExited  runEnd = iota // the process exited, or did not start
	endRestart               // a restart was requested
	endStopped               // the service was stopped for good
)

// runOnce starts the service and waits for it to exit, be restarted by
// request, or be stopped. It reports how the process ended, how long the
// run lasted and why it ended.
func (u *unit) runOnce() (exit ExitStatus, ran time.Duration, end runEnd) {
	start := time.Now()
	p, err := u.start()
	if err != nil {
		u.note("start failed: %v", err)
		u.update(func(st *Status) {
			st.LastError, st.Pid, st.Started = err.Error(), 0, start
		})
		return ExitStatus{Code: -1}, 0, endExited
	}
	u.note("started, pid %d", p.Pid())
	u.update(func(st *Status) {
		st.State, st.Pid, st.Started, st.LastError = StateStarting, p.Pid(), start, ""
	})

	probeCtx, cancelProbe := context.WithCancel(context.Background())
	probeDone := make(chan struct{})
	go func() {
		defer close(probeDone)
		u.probe(probeCtx, p)
	}()
	defer func() {
		cancelProbe()
		<-probeDone
	}()

	select {
	case <-p.Done():
		// Whatever the leader left running in its group goes with it,
		// before a restart can start another.
		err = killGroup(p)
	case <-u.restartReq:
		u.note("restart requested")
		u.update(func(st *Status) { st.State = StateStopping })
		err = signalGroupAndWait(p, u.stopGrace())
		end = endRestart
	case <-u.stop:
		u.update(func(st *Status) { st.State = StateStopping })
		err = signalGroupAndWait(p, u.stopGrace())
		end = endStopped
	}
	if err != nil {
		u.note("%v", err)
	}
	exit = p.Exit()
	now := time.Now()
	u.update(func(st *Status) {
		st.Pid, st.LastExit, st.ExitedAt = 0, &exit, now
		if end == endStopped {
			st.State = StateStopped
		}
	})
	if end != endExited {
		u.note("stopped: %s", exit)
	}
	return exit, now.Sub(start), end
}

func (u *unit) start() (Process, error) {
	spec := StartSpec{
		Argv:   u.svc.Argv,
		Env:    append(slices.Clone(u.sup.cfg.Env), u.svc.Env...),
		Dir:    u.svc.Dir,
		Stdout: &lineWriter{u: u, stream: "stdout"},
		Stderr: &lineWriter{u: u, stream: "stderr"},
	}
	if cg := u.sup.cfg.Cgroups; cg != nil {
		// A cgroup that cannot be set up costs the service its limits,
		// never its run.
		if f, err := cg.open(u.svc); err != nil {
			u.note("cgroup: %v; running without limits", err)
		} else {
			defer f.Close()
			spec.Cgroup = f
		}
	}
	return u.sup.cfg.Runner.Start(spec)
}

// probe polls the service's readiness probe until it passes or ctx ends.
func (u *unit) probe(ctx context.Context, p Process) {
	if u.svc.Ready != nil {
		t := time.NewTicker(u.sup.cfg.ProbeInterval)
		defer t.Stop()
		for {
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			err := u.svc.Ready.Check(cctx, u.sup.cfg.Runner)
			cancel()
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return
			}
			u.update(func(st *Status) { st.LastError = "not ready: " + err.Error() })
			select {
			case <-ctx.Done():
				return
			case <-p.Done():
				return
			case <-t.C:
			}
		}
	}
	u.update(func(st *Status) {
		if st.Pid == p.Pid() {
			st.State, st.LastError = StateRunning, ""
		}
	})
	u.note("ready")
	u.readyOnce.Do(func() { close(u.ready) })
}

// lineWriter splits a service's output into lines for its ring and the
// console. Over-long lines are cut at maxLine.
type lineWriter struct {
	u      *unit
	stream string
	buf    []byte
}

const maxLine = 4096

func (w *lineWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			room := maxLine - len(w.buf)
			if len(p) <= room {
				w.buf = append(w.buf, p...)
				break
			}
			w.buf = append(w.buf, p[:room]...)
			p = p[room:]
			w.emit()
			continue
		}
		w.buf = append(w.buf, p[:i]...)
		p = p[i+1:]
		w.emit()
	}
	return n, nil
}

func (w *lineWriter) emit() {
	text := string(bytes.TrimRight(w.buf, "\r"))
	w.buf = w.buf[:0]
	w.u.ring.Add(Line{Time: time.Now(), Stream: w.stream, Text: text})
	if c := w.u.sup.console; c != nil {
		fmt.Fprintf(c, "%s: %s\n", w.u.svc.Name, text)
	}
}
