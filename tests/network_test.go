package tests

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// netnsPair makes two network namespaces joined by a veth pair: "srv"
// (10.123.0.1/24 on vsrv) and "box" (vbox, unconfigured). It needs root.
func netnsPair(t *testing.T) (srv, box string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("network namespaces need root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Fatalf("ip (iproute2) not installed; make deps installs it: %v", err)
	}
	srv, box = fmt.Sprintf("ote-srv-%d", os.Getpid()), fmt.Sprintf("ote-box-%d", os.Getpid())
	for _, ns := range []string{srv, box} {
		ip(t, "netns", "add", ns)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
		ip(t, "-n", ns, "link", "set", "lo", "up")
	}
	ip(t, "link", "add", "vsrv", "netns", srv, "type", "veth", "peer", "name", "vbox", "netns", box)
	ip(t, "-n", srv, "addr", "add", "10.123.0.1/24", "dev", "vsrv")
	ip(t, "-n", srv, "link", "set", "vsrv", "up")
	return srv, box
}

func ip(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// startInNetns runs argv inside namespace ns until the test ends.
func startInNetns(t *testing.T, ns string, argv ...string) *syncBuffer {
	t.Helper()
	out := &syncBuffer{}
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns}, argv...)...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
		if t.Failed() {
			t.Logf("output of %v:\n%s", argv, out.String())
		}
	})
	return out
}

// waitForIP polls `ip` in ns until its output contains want.
func waitForIP(t *testing.T, want string, args ...string) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var out string
	for time.Now().Before(deadline) {
		if out = ip(t, args...); strings.Contains(out, want) {
			return out
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("ip %v never showed %q; last:\n%s", args, want, out)
	return ""
}

// The box's network component gets an address, a default route and name
// servers from a real DHCP server (Debian's dnsmasq).
func TestNetworkDHCP(t *testing.T) {
	srv, box := netnsPair(t)
	dir := t.TempDir()
	if _, err := exec.LookPath("dnsmasq"); err != nil {
		t.Fatalf("dnsmasq not installed; make deps installs it: %v", err)
	}
	startInNetns(t, srv, "dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--user=root",
		"--interface=vsrv", "--bind-interfaces", "--port=0", "--log-dhcp",
		"--dhcp-range=10.123.0.50,10.123.0.99,255.255.255.0,2m",
		"--dhcp-option=option:router,10.123.0.1", "--dhcp-option=option:dns-server,10.123.0.53",
		"--dhcp-leasefile="+filepath.Join(dir, "leases"), "--pid-file=")

	writeBootFile(t, dir, "config.yaml", "hostname: dhcp-box\nnetwork:\n  interface: vbox\n")
	resolv := filepath.Join(dir, "resolv.conf")
	out := startInNetns(t, box, builtBinary(t, "ote"), "run", "network",
		"--config", filepath.Join(dir, "boot", "ote", "config.yaml"), "--resolv", resolv)

	waitForIP(t, "inet 10.123.0.", "-n", box, "-4", "-o", "addr", "show", "dev", "vbox")
	if r := ip(t, "-n", box, "route", "show", "default"); !strings.Contains(r, "via 10.123.0.1 dev vbox") {
		t.Errorf("default route = %q, want via 10.123.0.1", r)
	}
	b, err := os.ReadFile(resolv)
	if err != nil || !strings.Contains(string(b), "nameserver 10.123.0.53") {
		t.Errorf("resolv.conf = %q, %v; want the DHCP server's name server", b, err)
	}
	leases, _ := os.ReadFile(filepath.Join(dir, "leases"))
	if !strings.Contains(string(leases), "dhcp-box") {
		t.Errorf("dnsmasq leases %q do not name the box's hostname", leases)
	}
	if !strings.Contains(out.String(), "dhcp lease") {
		t.Errorf("network component did not log its lease:\n%s", out.String())
	}
}

// A static configuration sets exactly what config.yaml says.
func TestNetworkStatic(t *testing.T) {
	_, box := netnsPair(t)
	dir := t.TempDir()
	writeBootFile(t, dir, "config.yaml", `network:
  mode: static
  interface: vbox
  address: 10.123.0.7/24
  gateway: 10.123.0.1
  dns: [10.123.0.53, 10.123.0.54]
`)
	resolv := filepath.Join(dir, "resolv.conf")
	startInNetns(t, box, builtBinary(t, "ote"), "run", "network",
		"--config", filepath.Join(dir, "boot", "ote", "config.yaml"), "--resolv", resolv)
	waitForIP(t, "inet 10.123.0.7/24", "-n", box, "-4", "-o", "addr", "show", "dev", "vbox")
	if r := ip(t, "-n", box, "route", "show", "default"); !strings.Contains(r, "via 10.123.0.1 dev vbox") {
		t.Errorf("default route = %q, want via 10.123.0.1", r)
	}
	b, _ := os.ReadFile(resolv)
	if got := string(b); !strings.Contains(got, "nameserver 10.123.0.53\nnameserver 10.123.0.54\n") {
		t.Errorf("resolv.conf = %q", got)
	}
}
