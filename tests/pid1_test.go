package tests

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ote-edge/ote/appliance/statuspage"
)

// ote init as PID 1, in new PID, mount and UTS namespaces rooted in a
// directory that holds only the ote binary and a boot partition: it mounts
// the kernel filesystems, names the box, runs the tree, and on SIGTERM
// (reboot) or SIGUSR2 (power off) stops the tree in order and calls
// reboot(2), which in a PID namespace ends it with SIGHUP or SIGINT.
// The network is the host's here, so the network service is disabled.
func TestInitAsPID1(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("namespaces need root")
	}
	root := t.TempDir()
	for _, d := range []string{"bin", "tmp", "etc"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	copyFile(t, builtBinary(t, "ote"), filepath.Join(root, "bin", "ote"))
	var hostname string
	for i, c := range []struct {
		sig      syscall.Signal
		action   string
		endedBy  syscall.Signal
		fromPID1 string
	}{
		{syscall.SIGTERM, "reboot", syscall.SIGHUP, "reboot(2) RESTART"},
		{syscall.SIGUSR2, "poweroff", syscall.SIGINT, "reboot(2) POWER_OFF"},
	} {
		addr := freeAddr(t)
		writeBootFile(t, root, "config.yaml", fmt.Sprintf("status:\n  listen: %q\nservices:\n  network:\n    disabled: true\n", addr))
		b := startTree(t, root, addr, "unshare", "--kill-child", "--pid", "--fork", "--mount", "--uts", "--propagation", "private",
			"--root", root, "/bin/ote", "init")
		r := b.waitFor("the box named and running", 30*time.Second, func(r statuspage.Report) bool {
			return service(r, "state").State == "running" && strings.HasPrefix(r.Device.Hostname, "ote-")
		})
		if i == 0 {
			hostname = r.Device.Hostname
		} else if r.Device.Hostname != hostname {
			t.Errorf("after a reboot the box is %q, before it was %q; the identity must survive", r.Device.Hostname, hostname)
		}
		var names []string
		for _, s := range r.Services {
			names = append(names, s.Name)
		}
		if strings.Join(names, ",") != "state,controller" {
			t.Errorf("services = %v, want state and controller (network disabled)", names)
		}

		init := firstChild(t, b.cmd.Process.Pid)
		mounts, err := os.ReadFile(fmt.Sprintf("/proc/%d/mounts", init))
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"proc /proc proc", "sysfs /sys sysfs", "devtmpfs /dev devtmpfs", "tmpfs /run tmpfs"} {
			if !strings.Contains(string(mounts), want) {
				t.Errorf("PID 1's mounts lack %q:\n%s", want, mounts)
			}
		}

		if err := syscall.Kill(init, c.sig); err != nil {
			t.Fatal(err)
		}
		select {
		case <-b.exited:
		case <-time.After(30 * time.Second):
			t.Fatalf("ote init did not end after %v", c.sig)
		}
		var exit *exec.ExitError
		err = b.cmd.Wait()
		if errors.As(err, &exit) {
			err = nil
		}
		ws := b.cmd.ProcessState.Sys().(syscall.WaitStatus)
		console := b.console.String()
		if !ws.Signaled() || ws.Signal() != c.endedBy {
			t.Errorf("%v: namespace ended with %v; want %v, the sign of %s\n%s", c.sig, b.cmd.ProcessState, c.endedBy, c.fromPID1, console)
		}
		for _, want := range []string{"shutting down (" + c.action + ")", "state: [supervisor] stopped", "all services stopped"} {
			if !strings.Contains(console, want) {
				t.Errorf("console lacks %q:\n%s", want, console)
			}
		}
	}
}

// firstChild waits up to five seconds for a child of pid (of any of its
// threads) and returns the first: the ote init that unshare forked.
func firstChild(t testing.TB, pid int) int {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if children := childPIDs(pid); len(children) > 0 {
			return children[0]
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("pid %d has no child", pid)
	return 0
}

// childPIDs is the children of pid, of all its threads.
func childPIDs(pid int) []int {
	var out []int
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	for _, f := range tasks {
		b, _ := os.ReadFile(f)
		for _, field := range strings.Fields(string(b)) {
			child, _ := strconv.Atoi(field)
			out = append(out, child)
		}
	}
	return out
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}
