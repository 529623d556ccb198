package tests

import (
	"strings"
	"testing"
	"time"

	"github.com/ote-edge/ote/appliance/statuspage"
)

// The path an operator takes: ote-cloud serve, a token as an enroll.yaml
// on a box's boot partition, and the box Connected in kubectl. The box
// keeps its identity across a restart (its single-use token is spent);
// a second box with the spent token shows the refusal on its page.
func TestBoxEnrollsAndConnects(t *testing.T) {
	builtBinary(t, "kube")
	c := startCloud(t, "--data-dir", t.TempDir(), "--api-listen", freeAddr(t), "--name", "root")
	r := runBinary(t, builtBinary(t, "ote-cloud"), "token", "create", "--kubeconfig", c.kubeconfig,
		"--enroll-yaml", "--server", c.tunnel, "--tags", "site=berlin-1", "--name-prefix", "shop", "--uses", "1")
	if r.code != 0 {
		t.Fatalf("token create: %s", r.stderr)
	}
	enrollYAML := r.stdout

	root := t.TempDir()
	writeBootFile(t, root, "enroll.yaml", enrollYAML)
	start := time.Now()
	box := startBox(t, root)
	rep := box.waitFor("the uplink connected", 60*time.Second, func(r statuspage.Report) bool { return r.Uplink.Phase == "connected" })
	t.Logf("box connected %v after ote init started", time.Since(start).Round(time.Millisecond))
	name := rep.Uplink.Cluster
	if !strings.HasPrefix(name, "shop-") || rep.Uplink.Parent != "root" || rep.Uplink.Tags["site"] != "berlin-1" || rep.Uplink.CertNotAfter.IsZero() {
		t.Errorf("uplink = %+v; want a shop-* cluster under root tagged site=berlin-1 with a certificate", rep.Uplink)
	}
	waitPhase(t, c.kubeconfig, name, "Connected")
	if out := mustKubectl(t, c.kubeconfig, "", "get", "ec", "-l", "site=berlin-1", "-o", "name"); strings.TrimSpace(out) != "edgecluster.ote.dev/"+name {
		t.Errorf("kubectl get ec -l site=berlin-1 = %q", out)
	}

	// A stopped box is Disconnected; started again it comes back with the
	// same identity, without the spent token.
	box.stop(20 * time.Second)
	waitPhase(t, c.kubeconfig, name, "Disconnected")
	box = startBox(t, root)
	rep = box.waitFor("the uplink back", 60*time.Second, func(r statuspage.Report) bool { return r.Uplink.Phase == "connected" })
	if rep.Uplink.Cluster != name {
		t.Errorf("after a restart the box is %q, was %q", rep.Uplink.Cluster, name)
	}
	waitPhase(t, c.kubeconfig, name, "Connected")

	second := t.TempDir()
	writeBootFile(t, second, "enroll.yaml", enrollYAML)
	other := startBox(t, second)
	rep = other.waitFor("the refusal", 60*time.Second, func(r statuspage.Report) bool { return r.Uplink.Phase == "refused" })
	if rep.Uplink.Error != "token already used" {
		t.Errorf("refused box shows %q, want the reason: token already used", rep.Uplink.Error)
	}
	other.stop(20 * time.Second)
	box.stop(20 * time.Second)
}
