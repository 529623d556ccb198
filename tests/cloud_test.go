package tests

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// cloud is an `ote-cloud serve` started by a test.
type cloud struct {
	cmd        *exec.Cmd
	out        *syncBuffer
	exited     chan struct{}
	kubeconfig string
	tunnel     string // the QUIC listener's address
}

// startCloud runs ote-cloud serve with args and waits until it serves.
func startCloud(t testing.TB, args ...string) *cloud {
	t.Helper()
	c := &cloud{out: &syncBuffer{}, exited: make(chan struct{})}
	if !slices.Contains(args, "--listen") {
		args = append(args, "--listen", "127.0.0.1:0")
	}
	c.cmd = exec.Command(builtBinary(t, "ote-cloud"), append([]string{"serve"}, args...)...)
	c.cmd.Stdout, c.cmd.Stderr = c.out, c.out
	c.cmd.WaitDelay = 5 * time.Second
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { c.cmd.Wait(); close(c.exited) }()
	t.Cleanup(func() {
		c.cmd.Process.Signal(syscall.SIGKILL)
		<-c.exited
		if t.Failed() {
			t.Logf("output of ote-cloud serve:\n%s", c.out.String())
		}
	})
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		if _, after, ok := strings.Cut(c.out.String(), "ote-cloud: serving; kubeconfig: "); ok {
			c.kubeconfig, _, _ = strings.Cut(after, "\n")
			_, after, _ = strings.Cut(c.out.String(), "ote-cloud: tunnel on udp ")
			c.tunnel, _, _ = strings.Cut(after, "\n")
			return c
		}
		select {
		case <-c.exited:
			t.Fatalf("ote-cloud serve exited: %v\n%s", c.cmd.ProcessState, c.out.String())
		case <-time.After(100 * time.Millisecond):
		}
	}
	t.Fatalf("ote-cloud serve not serving within 2 minutes:\n%s", c.out.String())
	return nil
}

// stop ends ote-cloud with SIGTERM and expects a clean exit.
func (c *cloud) stop(t testing.TB) {
	t.Helper()
	c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.exited:
	case <-time.After(30 * time.Second):
		t.Fatal("ote-cloud serve did not stop within 30s of SIGTERM")
	}
	if !c.cmd.ProcessState.Success() {
		t.Errorf("ote-cloud serve exited with %v", c.cmd.ProcessState)
	}
}

// kubectl runs the kubectl of the kube binary against kubeconfig.
func kubectl(t testing.TB, kubeconfig, stdin string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(filepath.Join(outDir(t), "kubectl"), append([]string{"--kubeconfig", kubeconfig}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func mustKubectl(t testing.TB, kubeconfig, stdin string, args ...string) string {
	t.Helper()
	out, err := kubectl(t, kubeconfig, stdin, args...)
	if err != nil {
		t.Fatalf("kubectl %v: %v\n%s", args, err, out)
	}
	return out
}

// ote-cloud serve runs kine and the upstream API server, writes an admin
// kubeconfig, and installs CRDs whose schemas reject bad objects.
func TestCloudServeEmbedded(t *testing.T) {
	builtBinary(t, "kube")
	dir := t.TempDir()
	api := freeAddr(t)
	c := startCloud(t, "--data-dir", dir, "--api-listen", api)
	if c.kubeconfig != filepath.Join(dir, "kubeconfig") {
		t.Errorf("kubeconfig at %q, want %q", c.kubeconfig, filepath.Join(dir, "kubeconfig"))
	}
	if fi, err := os.Stat(c.kubeconfig); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("kubeconfig: %v, mode %v; want 0600", err, fi.Mode().Perm())
	}

	mustKubectl(t, c.kubeconfig, `
apiVersion: ote.dev/v1alpha1
kind: EdgeCluster
metadata: {name: berlin-1, labels: {site: berlin-1}}
spec: {parent: region-eu}
---
apiVersion: ote.dev/v1alpha1
kind: ClusterDeployment
metadata: {name: hello, namespace: default}
spec:
  clusterSelector: {tags: ["site=berlin-*"]}
  manifests:
  - {apiVersion: v1, kind: ConfigMap, metadata: {name: hello}, data: {a: b}}
`, "apply", "-f", "-")
	out := mustKubectl(t, c.kubeconfig, "", "get", "ec")
	for _, col := range []string{"PHASE", "PARENT", "NEXT HOP", "SUBTREE", "LAST SEEN", "berlin-1", "region-eu"} {
		if !strings.Contains(out, col) {
			t.Errorf("kubectl get ec lacks %q:\n%s", col, out)
		}
	}
	if out := mustKubectl(t, c.kubeconfig, "", "get", "cdep", "-n", "default"); !strings.Contains(out, "TARGETED") || !strings.Contains(out, "hello") {
		t.Errorf("kubectl get cdep:\n%s", out)
	}

	bad := []struct{ name, obj, want string }{
		{"bad name", "apiVersion: ote.dev/v1alpha1\nkind: EdgeCluster\nmetadata: {name: Bad_Name}\nspec: {}\n", "metadata.name"},
		{"empty selector", "apiVersion: ote.dev/v1alpha1\nkind: ClusterDeployment\nmetadata: {name: x, namespace: default}\nspec:\n  clusterSelector: {}\n  manifests: [{apiVersion: v1, kind: ConfigMap, metadata: {name: x}}]\n", "spec.clusterSelector"},
		{"manifest without kind", "apiVersion: ote.dev/v1alpha1\nkind: ClusterDeployment\nmetadata: {name: no-kind, namespace: default}\nspec:\n  clusterSelector: {names: [a]}\n  manifests: [{data: {a: b}}]\n", "spec.manifests[0].kind: Required"},
		{"bad tag glob", "apiVersion: ote.dev/v1alpha1\nkind: ClusterDeployment\nmetadata: {name: z, namespace: default}\nspec:\n  clusterSelector: {tags: [\"no-equals-sign\"]}\n  manifests: [{apiVersion: v1, kind: ConfigMap, metadata: {name: x}}]\n", "spec.clusterSelector.tags[0]"},
	}
	for _, b := range bad {
		if out, err := kubectl(t, c.kubeconfig, b.obj, "create", "-f", "-"); err == nil || !strings.Contains(out, b.want) {
			t.Errorf("%s: kubectl create = %v\n%s\nwant a rejection naming %s", b.name, err, out, b.want)
		}
	}
	if out, err := kubectl(t, c.kubeconfig, "", "patch", "ec", "berlin-1", "--subresource=status", "--type=merge", "-p", `{"status":{"phase":"Exploded"}}`); err == nil || !strings.Contains(out, "Unsupported value") {
		t.Errorf("an unknown phase was accepted: %v\n%s", err, out)
	}
	mustKubectl(t, c.kubeconfig, "", "patch", "ec", "berlin-1", "--subresource=status", "--type=merge", "-p", `{"status":{"phase":"Connected","subtreeSize":1}}`)
	// The phase and the parent are selectable fields: the API server
	// filters on them.
	for selector, want := range map[string]string{"status.phase=Connected": "edgecluster.ote.dev/berlin-1", "status.phase!=Connected": "", "spec.parent=region-eu": "edgecluster.ote.dev/berlin-1", "spec.parent=elsewhere": ""} {
		out := mustKubectl(t, c.kubeconfig, "", "get", "ec", "--field-selector", selector, "-o", "name")
		var names []string
		for _, f := range strings.Fields(out) {
			if strings.HasPrefix(f, "edgecluster.ote.dev/") {
				names = append(names, f)
			}
		}
		if got := strings.Join(names, " "); got != want {
			t.Errorf("kubectl get ec --field-selector %s = %q, want %q", selector, out, want)
		}
	}

	// Everything survives a restart on the same data, under the same CA.
	// The restart bounds the API server's memory: its runtime is told so
	// by its environment.
	ca, _ := os.ReadFile(filepath.Join(dir, "pki", "ca.crt"))
	c.stop(t)
	c = startCloud(t, "--data-dir", dir, "--api-listen", api, "--apiserver-memory-limit", "1Gi")
	apiserver, _ := childrenOf(t, c.cmd.Process.Pid, 0)
	environ, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", apiserver))
	if err != nil {
		t.Fatal(err)
	}
	env := strings.Split(string(environ), "\x00")
	for _, want := range []string{"GOGC=off", "GOMEMLIMIT=1073741824"} {
		if !slices.Contains(env, want) {
			t.Errorf("the API server's environment lacks %s: %q", want, env)
		}
	}
	if out := mustKubectl(t, c.kubeconfig, "", "get", "ec", "berlin-1"); !strings.Contains(out, "Connected") {
		t.Errorf("after a restart:\n%s", out)
	}
	if again, _ := os.ReadFile(filepath.Join(dir, "pki", "ca.crt")); string(again) != string(ca) {
		t.Error("the CA changed across a restart")
	}

	// Against an existing cluster ote-cloud starts no API server and
	// applies its CRDs again, which changes nothing.
	ext := startCloud(t, "--kubeconfig", c.kubeconfig)
	if strings.Contains(ext.out.String(), "apiserver:") {
		t.Errorf("with --kubeconfig ote-cloud started an API server:\n%s", ext.out.String())
	}
	ext.stop(t)
	c.stop(t)
}

func TestCloudServeUsage(t *testing.T) {
	bin := builtBinary(t, "ote-cloud")
	for _, args := range [][]string{{"serve"}, {"serve", "--data-dir", "a", "--kubeconfig", "b"}, {"serve", "--bogus"}, {"serve", "--data-dir", "a", "--lost-after", "10ms"}, {"serve", "--data-dir", "a", "--ping-children", "-1s"}, {"serve", "--data-dir", "a", "--memory-limit", "lots"}, {"serve", "--data-dir", "a", "--memory-limit", "1Mi"}, {"serve", "--data-dir", "a", "--memory-limit", "-8Gi"}, {"serve", "--data-dir", "a", "--tunnel-shards", "0"}, {"serve", "--data-dir", "a", "--tunnel-shards", "65"}, {"serve", "--data-dir", "a", "--shard-memory-limit", "1Gi"}, {"serve", "--data-dir", "a", "--apiserver-memory-limit", "1Mi"}, {"serve", "--kubeconfig", "b", "--apiserver-memory-limit", "1Gi"}} {
		r := runBinary(t, bin, args...)
		if r.code != 2 || !strings.Contains(r.stderr, "usage: ote-cloud serve") {
			t.Errorf("ote-cloud %v = exit %d, stderr %q; want 2 and usage", args, r.code, r.stderr)
		}
	}
	r := runBinary(t, bin, "serve", "--kubeconfig", filepath.Join(t.TempDir(), "missing"))
	if r.code != 1 || !strings.Contains(r.stderr, "missing") {
		t.Errorf("ote-cloud serve with a missing kubeconfig = exit %d, %q", r.code, r.stderr)
	}
}
