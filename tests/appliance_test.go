package tests

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ote-edge/ote/appliance/statuspage"
)

// box is an `ote init --root` process tree started by a test.
type box struct {
	t       testing.TB
	root    string
	addr    string // status page
	cmd     *exec.Cmd
	console *syncBuffer
	exited  chan struct{}
	started time.Time // when the process started
	// timeout bounds one status request; default 5s. A VM's is short:
	// QEMU's port forward accepts a connection and holds it while the
	// guest's network is not up yet, so a poll must give up and try anew.
	timeout time.Duration
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// freeAddr is a TCP address free on loopback (freeLoopbackAddr).
func freeAddr(t testing.TB) string {
	t.Helper()
	return freeLoopbackAddr(t, "tcp")
}

// writeBootFile puts a file on the box's boot partition.
func writeBootFile(t testing.TB, root, name, content string) {
	t.Helper()
	p := filepath.Join(root, "boot", "ote", name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// startBox starts ote init under root and waits for its status page.
func startBox(t testing.TB, root string) *box {
	t.Helper()
	addr := freeAddr(t)
	return startTree(t, root, addr, builtBinary(t, "ote"), "init", "--root", root, "--status-listen", addr)
}

// startTree runs argv, which starts an ote init with its status page on
// addr, and waits for the page.
func startTree(t testing.TB, root, addr string, argv ...string) *box {
	t.Helper()
	b := &box{t: t, root: root, addr: addr, console: &syncBuffer{}, exited: make(chan struct{})}
	b.cmd = exec.Command(argv[0], argv[1:]...)
	b.cmd.WaitDelay = 5 * time.Second // a child that keeps our pipes must not hang the test
	b.cmd.Stdout, b.cmd.Stderr = b.console, b.console
	b.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := b.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { b.cmd.Wait(); close(b.exited) }()
	t.Cleanup(func() {
		b.cmd.Process.Signal(syscall.SIGKILL)
		<-b.exited
		if t.Failed() {
			t.Logf("console of ote init:\n%s", b.console.String())
		}
	})
	b.waitFor("the status page", 30*time.Second, func(r statuspage.Report) bool { return true })
	return b
}

// status fetches the JSON report.
func (b *box) status() (statuspage.Report, error) {
	var r statuspage.Report
	timeout := b.timeout
	if timeout == 0 {
		timeout = 5 * time.Second
	}
	client := &http.Client{Timeout: timeout, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Get("http://" + b.addr + "/api/v1/status")
	if err != nil {
		return r, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return r, fmt.Errorf("status %s", resp.Status)
	}
	return r, json.NewDecoder(resp.Body).Decode(&r)
}

// waitFor polls the report until ok is true, failing the test after d.
func (b *box) waitFor(what string, d time.Duration, ok func(statuspage.Report) bool) statuspage.Report {
	b.t.Helper()
	deadline := time.Now().Add(d)
	var last error
	for time.Now().Before(deadline) {
		select {
		case <-b.exited:
			b.t.Fatalf("ote init exited while waiting for %s", what)
		default:
		}
		r, err := b.status()
		if err == nil && ok(r) {
			return r
		}
		last = err
		time.Sleep(50 * time.Millisecond)
	}
	b.t.Fatalf("no %s within %v (last error %v)", what, d, last)
	return statuspage.Report{}
}

func service(r statuspage.Report, name string) statuspage.ServiceReport {
	for _, s := range r.Services {
		if s.Name == name {
			return s
		}
	}
	return statuspage.ServiceReport{}
}

// stop sends SIGTERM and waits for ote init to exit.
func (b *box) stop(d time.Duration) {
	b.t.Helper()
	b.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-b.exited:
	case <-time.After(d):
		b.t.Fatalf("ote init did not stop within %v of SIGTERM", d)
	}
}

// alive reports whether pid runs; a zombie, killed and not yet reaped by
// whichever init inherited it, counts as dead.
func alive(pid int) bool {
	if pid <= 0 || syscall.Kill(pid, 0) != nil {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name.
	i := bytes.LastIndexByte(stat, ')')
	return i < 0 || i+2 >= len(stat) || stat[i+2] != 'Z'
}

// The supervisor with real child processes: a crash loop, a service that
// ignores SIGTERM (and has a child), one that exits 125, one slow to be
// ready and one that depends on it.
func TestSupervisedTree(t *testing.T) {
	root := t.TempDir()
	ready := filepath.Join(root, "slow-is-ready")
	writeBootFile(t, root, "config.yaml", fmt.Sprintf(`
services:
  crasher:
    argv: [/bin/sh, -c, "echo crashing; exit 3"]
  stubborn:
    argv: [/bin/sh, -c, "trap '' TERM; sleep 1000 & echo child $!; wait"]
    stopGrace: 1s
  quitter:
    argv: [/bin/sh, -c, "echo giving up; exit 125"]
  slow:
    argv: [/bin/sh, -c, "sleep 2; touch %[1]s; exec sleep 1000"]
    ready:
      exec: [/bin/test, -f, %[1]s]
  dependent:
    argv: [/bin/sh, -c, "echo dependent up; exec sleep 1000"]
    after: [slow]
`, ready))
	b := startBox(t, root)

	r := b.waitFor("a crash loop", 40*time.Second, func(r statuspage.Report) bool {
		return service(r, "crasher").CrashLoop && service(r, "dependent").State == "running"
	})
	crasher := service(r, "crasher")
	if crasher.State != "backoff" || crasher.Restarts < 4 || crasher.LastExit == nil || crasher.LastExit.Code != 3 {
		t.Errorf("crasher = %+v; want backoff after at least 4 restarts, last exit 3", crasher.Status)
	}
	if !strings.Contains(fmt.Sprint(crasher.Log), "crashing") {
		t.Errorf("crasher's log %v lacks its output", crasher.Log)
	}
	if q := service(r, "quitter"); q.State != "failed" || q.Restarts != 0 || q.LastExit == nil || q.LastExit.Code != 125 {
		t.Errorf("quitter = %+v; want failed after one run with exit 125", q.Status)
	}
	slow, dep := service(r, "slow"), service(r, "dependent")
	if slow.State != "running" || dep.Started.Sub(slow.Started) < 2*time.Second {
		t.Errorf("slow started %v (%s), dependent %v; want dependent at least 2s after slow, once slow was ready", slow.Started, slow.State, dep.Started)
	}
	if st := service(r, "state"); st.State != "running" || r.State.Revision == 0 {
		t.Errorf("state service = %s, revision %d; want running with a revision", st.State, r.State.Revision)
	}

	// The stubborn service's child: it must not outlive the tree.
	stubborn := service(r, "stubborn")
	var child int
	for _, l := range stubborn.Log {
		fmt.Sscanf(l.Text, "child %d", &child)
	}
	if !alive(stubborn.Pid) || !alive(child) {
		t.Fatalf("stubborn pid %d and its child %d should be running (log %v)", stubborn.Pid, child, stubborn.Log)
	}

	start := time.Now()
	b.stop(20 * time.Second)
	if took := time.Since(start); took < time.Second {
		t.Errorf("stop took %v; the stubborn service's 1s grace should have run out first", took)
	}
	if alive(stubborn.Pid) || alive(child) {
		t.Errorf("after stop: stubborn %d alive %v, its child %d alive %v; the whole group must be killed", stubborn.Pid, alive(stubborn.Pid), child, alive(child))
	}
	console := b.console.String()
	depStop := strings.Index(console, "dependent: [supervisor] stopped")
	slowStop := strings.Index(console, "slow: [supervisor] stopped")
	stateStop := strings.Index(console, "state: [supervisor] stopped")
	if depStop < 0 || slowStop < depStop || stateStop < 0 {
		t.Errorf("stop order: dependent at %d, slow at %d, state at %d; want dependent before slow", depStop, slowStop, stateStop)
	}
	if !strings.Contains(console, "stubborn: [supervisor] stopped: killed by SIGKILL") {
		t.Errorf("console does not show stubborn killed by SIGKILL:\n%s", console)
	}
}

// A broken config.yaml does not stop the box: it runs with defaults and
// shows the error, with file, line and key.
func TestBadConfigBootsWithDefaults(t *testing.T) {
	root := t.TempDir()
	writeBootFile(t, root, "config.yaml", "hostname: ok\nnetwork:\n  mode: carrier-pigeon\n")
	writeBootFile(t, root, "enroll.yaml", "server: nowhere\n")
	b := startBox(t, root)
	r := b.waitFor("the state service", 20*time.Second, func(r statuspage.Report) bool { return service(r, "state").State == "running" })
	joined := strings.Join(r.ConfigErrors, "\n")
	for _, want := range []string{"config.yaml:3: network.mode: unknown mode", "enroll.yaml:1: server: want HOST:PORT"} {
		if !strings.Contains(joined, want) {
			t.Errorf("config errors %q lack %q", r.ConfigErrors, want)
		}
	}
	if !strings.Contains(b.console.String(), "network.mode: unknown mode") {
		t.Errorf("console does not show the config error:\n%s", b.console.String())
	}
	if r.Uplink.Phase != "not enrolled" {
		t.Errorf("uplink phase = %q, want not enrolled", r.Uplink.Phase)
	}
	b.stop(15 * time.Second)
}

// ote status prints the same report in a terminal.
func TestOteStatusCommand(t *testing.T) {
	b := startBox(t, t.TempDir())
	b.waitFor("the state service", 20*time.Second, func(r statuspage.Report) bool { return service(r, "state").State == "running" })
	out := runBinary(t, builtBinary(t, "ote"), "status", "--addr", b.addr)
	if out.code != 0 || !regexp.MustCompile(`(?m)^state\s+running`).MatchString(out.stdout) || !strings.Contains(out.stdout, "not enrolled") {
		t.Errorf("ote status = exit %d\n%s%s", out.code, out.stdout, out.stderr)
	}
	b.stop(15 * time.Second)
	_ = context.Background
}

func dialable(socket string) bool {
	c, err := net.Dial("unix", socket)
	if err != nil {
		return false
	}
	c.Close()
	return true
}
