package tests

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ote-edge/ote/appliance/state"
	"github.com/ote-edge/ote/appliance/statuspage"
	"github.com/ote-edge/ote/cloud/tunnel"
)

// enrolledBox starts a box enrolled with its own token carrying tags.
func enrolledBox(t *testing.T, c *cloud, name, tags string) (*box, string) {
	t.Helper()
	r := runBinary(t, builtBinary(t, "ote-cloud"), "token", "create", "--kubeconfig", c.kubeconfig,
		"--enroll-yaml", "--server", c.tunnel, "--tags", tags)
	if r.code != 0 {
		t.Fatalf("token create: %s", r.stderr)
	}
	root := t.TempDir()
	writeBootFile(t, root, "enroll.yaml", r.stdout+"name: "+name+"\n")
	b := startBox(t, root)
	b.waitFor(name+" connected", 60*time.Second, func(r statuspage.Report) bool { return r.Uplink.Phase == "connected" })
	return b, root
}

// heldDesiredIfAny is the desired state a box holds as JSON, or "".
func heldDesiredIfAny(root string) string {
	st, err := state.Dial(filepath.Join(root, "run", "state.sock"))
	if err != nil {
		return ""
	}
	defer st.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	d, _, err := state.Get(ctx, st, state.Key[tunnel.Desired]("uplink/desired"))
	if err != nil {
		return ""
	}
	b, _ := json.Marshal(d)
	return string(b)
}

// heldDesired reads the desired state a box keeps in its local state.
func heldDesired(t *testing.T, root string) tunnel.Desired {
	t.Helper()
	st, err := state.Dial(filepath.Join(root, "run", "state.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d, _, err := state.Get(ctx, st, state.Key[tunnel.Desired]("uplink/desired"))
	if err != nil {
		t.Fatalf("desired state on the box: %v", err)
	}
	return d
}

func cdStatus(t testing.TB, kubeconfig string) (targeted, delivered int, clusters string) {
	t.Helper()
	return cdStatusOf(t, kubeconfig, "hello")
}

func cdStatusOf(t testing.TB, kubeconfig, name string) (targeted, delivered int, clusters string) {
	t.Helper()
	out := mustKubectl(t, kubeconfig, "", "get", "cdep", name, "-n", "default", "-o", "json")
	var obj struct {
		Status struct {
			Targeted, Delivered int
			Clusters            []struct{ Name, Phase string }
		}
	}
	json.Unmarshal([]byte(out), &obj)
	var cs []string
	for _, c := range obj.Status.Clusters {
		cs = append(cs, c.Name+"="+c.Phase)
	}
	return obj.Status.Targeted, obj.Status.Delivered, strings.Join(cs, ",")
}

// The controller holds its boxes' tunnels in two shard processes here:
// the deployment's status counts what boxes in both report.
func TestDeploymentReachesMatchingBoxes(t *testing.T) {
	builtBinary(t, "kube")
	c := startCloud(t, "--data-dir", t.TempDir(), "--api-listen", freeAddr(t), "--tunnel-shards", "2")
	b1, r1 := enrolledBox(t, c, "berlin-1", "site=berlin-1")
	b2, r2 := enrolledBox(t, c, "berlin-2", "site=berlin-2")
	b3, r3 := enrolledBox(t, c, "paris-1", "site=paris-1")

	const cd = `
apiVersion: ote.dev/v1alpha1
kind: ClusterDeployment
metadata: {name: hello, namespace: default}
spec:
  clusterSelector: {tags: ["site=berlin-*"]}
  manifests:
  - {apiVersion: v1, kind: ConfigMap, metadata: {name: hello}, data: {greeting: MSG}}
`
	mustKubectl(t, c.kubeconfig, strings.Replace(cd, "MSG", "hallo", 1), "apply", "-f", "-")
	for _, b := range []*box{b1, b2} {
		b.waitFor("the deployment", 30*time.Second, func(r statuspage.Report) bool { return r.Uplink.Revision > 0 })
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		targeted, delivered, clusters := cdStatus(t, c.kubeconfig)
		if targeted == 2 && delivered == 2 && clusters == "berlin-1=Received,berlin-2=Received" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ClusterDeployment status: targeted %d, delivered %d, clusters %s; want 2, 2, both berlins Received", targeted, delivered, clusters)
		}
		time.Sleep(200 * time.Millisecond)
	}
	d := heldDesired(t, r1)
	if len(d.Deployments) != 1 || d.Deployments[0].Name != "hello" || !strings.Contains(string(d.Deployments[0].Manifests[0]), "hallo") {
		t.Errorf("berlin-1 holds %+v", d)
	}
	if d := heldDesired(t, r3); len(d.Deployments) != 0 {
		t.Errorf("paris-1 was sent %+v; it does not match site=berlin-*", d.Deployments)
	}
	first := d.Revision

	// A box that comes back holding the current revision is sent nothing;
	// the revision stays.
	b2.stop(20 * time.Second)
	b2 = startBox(t, r2)
	b2.waitFor("berlin-2 back", 60*time.Second, func(r statuspage.Report) bool { return r.Uplink.Phase == "connected" })
	if got := heldDesired(t, r2).Revision; got != first {
		t.Errorf("after a reconnect berlin-2 holds revision %d, want %d", got, first)
	}

	// A change reaches the boxes as the next revision.
	mustKubectl(t, c.kubeconfig, strings.Replace(cd, "MSG", "servus", 1), "apply", "-f", "-")
	b1.waitFor("the new revision", 30*time.Second, func(r statuspage.Report) bool { return r.Uplink.Revision == first+1 })
	if d := heldDesired(t, r1); !strings.Contains(string(d.Deployments[0].Manifests[0]), "servus") {
		t.Errorf("berlin-1 holds %s after the change", d.Deployments[0].Manifests[0])
	}
	_ = b3
}
