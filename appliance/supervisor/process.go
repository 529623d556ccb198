package supervisor

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"

	"golang.org/x/sys/unix"
)

// Runner starts the processes of the supervisor and of its exec probes.
// ExecRunner starts real ones; tests of the supervision logic use a fake.
type Runner interface {
	Start(spec StartSpec) (Process, error)
}

// StartSpec describes one process to start.
type StartSpec struct {
	Argv           []string
	Env            []string // the whole environment; nil means the runner's own
	Dir            string
	Stdout, Stderr io.Writer // nil discards
	// Cgroup, when set, is an open cgroup v2 directory the process starts in.
	Cgroup *os.File
}

// A Process is a started process, the leader of its own process group.
type Process interface {
	Pid() int
	// Done is closed when the process has exited and been reaped.
	Done() <-chan struct{}
	// Exit is how the process ended; valid once Done is closed.
	Exit() ExitStatus
	// Signal sends sig to the process group the process leads. Signal 0
	// reports, by a nil error, that some member of the group is alive.
	Signal(sig syscall.Signal) error
}

// ExitStatus is how a process ended.
type ExitStatus struct {
	Code   int            `json:"code"`             // exit status, or -1 when killed by a signal
	Signal syscall.Signal `json:"signal,omitempty"` // the signal that ended it, if any
}

// Success reports a zero exit status.
func (e ExitStatus) Success() bool { return e.Code == 0 && e.Signal == 0 }

func (e ExitStatus) String() string {
	if e.Signal != 0 {
		return "killed by " + signalName(e.Signal)
	}
	return fmt.Sprintf("exit status %d", e.Code)
}

func signalName(s syscall.Signal) string {
	if n := unix.SignalName(s); n != "" {
		return n
	}
	return fmt.Sprintf("signal %d", int(s))
}

func exitStatus(ws syscall.WaitStatus) ExitStatus {
	if ws.Signaled() {
		return ExitStatus{Code: -1, Signal: ws.Signal()}
	}
	return ExitStatus{Code: ws.ExitStatus()}
}

// ExecRunner starts real processes, each in a new process group and killed
// if the supervisor dies.
type ExecRunner struct {
	// Reaper, when set, collects exit statuses; it must be used when the
	// supervisor is PID 1 or a subreaper, where it alone may wait for
	// children. When nil each process is waited for on its own.
	Reaper *Reaper
}

// Start implements Runner.
func (r *ExecRunner) Start(spec StartSpec) (Process, error) {
	if len(spec.Argv) == 0 {
		return nil, errors.New("empty argv")
	}
	path, err := exec.LookPath(spec.Argv[0])
	if err != nil {
		return nil, err
	}
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return nil, err
	}
	defer devnull.Close()

	var closeAfterStart []*os.File
	defer func() {
		for _, f := range closeAfterStart {
			f.Close()
		}
	}()
	output := func(w io.Writer) (*os.File, error) {
		if w == nil {
			return devnull, nil
		}
		pr, pw, err := os.Pipe()
		if err != nil {
			return nil, err
		}
		closeAfterStart = append(closeAfterStart, pw)
		go func() {
			io.Copy(w, pr) // ends at EOF, when every holder of pw is gone
			pr.Close()
		}()
		return pw, nil
	}
	stdout, err := output(spec.Stdout)
	if err != nil {
		return nil, err
	}
	stderr, err := output(spec.Stderr)
	if err != nil {
		return nil, err
	}
	env := spec.Env
	if env == nil {
		env = os.Environ()
	}
	sys := &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if spec.Cgroup != nil {
		sys.UseCgroupFD = true
		sys.CgroupFD = int(spec.Cgroup.Fd())
	}
	attr := &os.ProcAttr{Dir: spec.Dir, Env: env, Files: []*os.File{devnull, stdout, stderr}, Sys: sys}

	p := &execProcess{done: make(chan struct{})}
	start := func() error {
		osp, err := os.StartProcess(path, spec.Argv, attr)
		if err != nil {
			return err
		}
		p.pid = osp.Pid
		// The exit status is collected with wait4 below or by the reaper,
		// not through os.Process.
		return osp.Release()
	}
	if r.Reaper != nil {
		err = r.Reaper.start(p, start)
	} else if err = start(); err == nil {
		go p.wait()
	}
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", spec.Argv[0], err)
	}
	return p, nil
}

type execProcess struct {
	pid  int
	done chan struct{}
	exit ExitStatus
}

func (p *execProcess) Pid() int              { return p.pid }
func (p *execProcess) Done() <-chan struct{} { return p.done }
func (p *execProcess) Exit() ExitStatus      { <-p.done; return p.exit }

func (p *execProcess) Signal(sig syscall.Signal) error {
	return syscall.Kill(-p.pid, sig)
}

func (p *execProcess) finish(ws syscall.WaitStatus) {
	p.exit = exitStatus(ws)
	close(p.done)
}

// wait collects the exit status of a process that has no reaper.
func (p *execProcess) wait() {
	var ws syscall.WaitStatus
	for {
		_, err := syscall.Wait4(p.pid, &ws, 0, nil)
		if err != syscall.EINTR {
			break
		}
	}
	p.finish(ws)
}
