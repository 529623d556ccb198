package tests

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ote-edge/ote/appliance/statuspage"
)

// A box behind a lossy, slow link (and through an outage) enrolls, and
// converges on the latest desired state: nothing lost, nothing stale.
func TestLossyLinkConverges(t *testing.T) {
	builtBinary(t, "kube")
	c := startCloud(t, "--data-dir", t.TempDir(), "--api-listen", freeAddr(t))
	proxy := newUDPProxy(t, c.tunnel)
	proxy.set(0.15, 40*time.Millisecond)

	r := runBinary(t, builtBinary(t, "ote-cloud"), "token", "create", "--kubeconfig", c.kubeconfig,
		"--enroll-yaml", "--server", proxy.Addr(), "--tags", "site=far-away")
	if r.code != 0 {
		t.Fatalf("token create: %s", r.stderr)
	}
	root := t.TempDir()
	writeBootFile(t, root, "enroll.yaml", r.stdout+"name: far-1\n")
	b := startBox(t, root)
	b.waitFor("connected through 15% loss", 90*time.Second, func(r statuspage.Report) bool { return r.Uplink.Phase == "connected" })

	apply := func(version int) {
		mustKubectl(t, c.kubeconfig, fmt.Sprintf(`
apiVersion: ote.dev/v1alpha1
kind: ClusterDeployment
metadata: {name: app, namespace: default}
spec:
  clusterSelector: {names: [far-1]}
  manifests:
  - {apiVersion: v1, kind: ConfigMap, metadata: {name: app}, data: {version: "v%d"}}
`, version), "apply", "-f", "-")
	}
	converged := func(version int) {
		t.Helper()
		want := fmt.Sprintf(`"v%d"`, version)
		deadline := time.Now().Add(90 * time.Second)
		for time.Now().Before(deadline) {
			if d := heldDesiredIfAny(root); len(d) > 0 && strings.Contains(d, want) {
				return
			}
			time.Sleep(200 * time.Millisecond)
		}
		t.Fatalf("the box never held version %s; it holds %s", want, heldDesiredIfAny(root))
	}

	for v := 1; v <= 5; v++ { // changes in quick succession
		apply(v)
	}
	converged(5)

	// An outage shorter than the idle timeout, with a change during it.
	proxy.set(1, 0)
	apply(6)
	time.Sleep(5 * time.Second)
	proxy.set(0.15, 40*time.Millisecond)
	converged(6)
	deadline := time.Now().Add(30 * time.Second)
	for {
		targeted, delivered, clusters := cdStatusOf(t, c.kubeconfig, "app")
		if targeted == 1 && delivered == 1 && clusters == "far-1=Received" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ClusterDeployment status: %d targeted, %d delivered, %s", targeted, delivered, clusters)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// A region whose link to the root goes down and comes back, without a
// restart, resumes its report where it left off: it has nothing new to
// say, and the root brings the clusters below it back from Disconnected
// by itself.
func TestRegionBackAfterOutageRestoresItsSubtree(t *testing.T) {
	builtBinary(t, "kube")
	root := startCloud(t, "--data-dir", t.TempDir(), "--api-listen", freeAddr(t), "--name", "root")
	proxy := newUDPProxy(t, root.tunnel)
	enroll := tokenFile(t, root.kubeconfig, proxy.Addr(), "region-a", "--level")
	regionListen := freeUDPAddr(t)
	region := startCloud(t, "--data-dir", t.TempDir(), "--api-listen", freeAddr(t), "--listen", regionListen,
		"--enroll-file", enroll, "--lost-after", "2s")
	leafRoot := t.TempDir()
	tok, err := os.ReadFile(tokenFile(t, region.kubeconfig, regionListen, "leaf-1"))
	if err != nil {
		t.Fatal(err)
	}
	writeBootFile(t, leafRoot, "enroll.yaml", string(tok))
	startBox(t, leafRoot)

	leafIs := func(phase string) func() bool {
		return func() bool {
			return edgeClusters(t, root.kubeconfig)["leaf-1"] == ecView{phase, "region-a", "region-a"}
		}
	}
	describe := func() string { return fmt.Sprint(edgeClusters(t, root.kubeconfig)) }
	eventually(t, "the root sees leaf-1 through region-a", 90*time.Second, leafIs("Connected"), describe)

	proxy.set(1, 0) // the region's link goes down: the root takes it for lost after 2s
	eventually(t, "the root sees leaf-1 cut off", 30*time.Second, leafIs("Disconnected"), describe)
	proxy.set(0, 0)
	eventually(t, "the root sees leaf-1 back through region-a", 30*time.Second, leafIs("Connected"), describe)
}
