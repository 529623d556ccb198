package tests

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ote-edge/ote/appliance/state"
	"github.com/ote-edge/ote/cloud/tunnel"
	"github.com/ote-edge/ote/cloud/uplink"
)

// leaf is a box of the tree: ote init, with its state, controller and
// status page, under its own root.
type leaf struct {
	name, region string
	tags         string
	box          *box
	root         string
}

// state is the leaf's uplink as its status page shows it, and the desired
// set it holds in its local state (nil before any).
func (l *leaf) state() (state.Uplink, *tunnel.Desired) {
	r, _ := l.box.status()
	var d *tunnel.Desired
	if held := heldDesiredIfAny(l.root); held != "" {
		d = &tunnel.Desired{}
		json.Unmarshal([]byte(held), d)
	}
	return r.Uplink, d
}

// freeUDPAddr is a UDP address free on loopback (freeLoopbackAddr).
func freeUDPAddr(t testing.TB) string {
	t.Helper()
	return freeLoopbackAddr(t, "udp")
}

// tokenFile writes an enroll.yaml for server made at the level behind
// kubeconfig, with extra token flags, and returns its path.
func tokenFile(t testing.TB, kubeconfig, server, name string, flags ...string) string {
	t.Helper()
	r := runBinary(t, builtBinary(t, "ote-cloud"), append([]string{"token", "create", "--kubeconfig", kubeconfig, "--enroll-yaml", "--server", server}, flags...)...)
	if r.code != 0 {
		t.Fatalf("token create: %s", r.stderr)
	}
	p := filepath.Join(t.TempDir(), "enroll.yaml")
	content := r.stdout
	if name != "" {
		content += "name: " + name + "\n"
	}
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// ecView is what a level's kubectl says of its EdgeClusters.
type ecView struct {
	phase, nextHop, parent string
}

func edgeClusters(t testing.TB, kubeconfig string) map[string]ecView {
	t.Helper()
	out, err := kubectl(t, kubeconfig, "", "get", "ec", "-o", "json")
	if err != nil {
		return nil
	}
	var list struct {
		Items []struct {
			Metadata struct{ Name string }
			Spec     struct{ Parent string }
			Status   struct{ Phase, NextHop string }
		}
	}
	json.Unmarshal([]byte(out), &list)
	m := map[string]ecView{}
	for _, it := range list.Items {
		m[it.Metadata.Name] = ecView{it.Status.Phase, it.Status.NextHop, it.Spec.Parent}
	}
	return m
}

// eventually polls cond until it holds or the time is up, then fails
// with what describe says.
func eventually(t testing.TB, what string, within time.Duration, cond func() bool, describe func() string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %s", what, within, describe())
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// A tree of three levels: root, two regions, and leaves under each. A
// ClusterDeployment at the root reaches exactly the matching leaves
// through their regions, with complete status at the root; one made at a
// region stays in its subtree. When a region stops, its leaves fail over
// to the other region and the status stays complete; when it is back,
// they return and the topology is restored.
func TestTreeOfLevels(t *testing.T) {
	builtBinary(t, "kube")
	const perRegion = 11
	// The root holds its children's tunnels in three shard processes: its
	// levels, their alternates and their subtrees' reports are one
	// controller's, whichever shard holds each level.
	root := startCloud(t, "--data-dir", t.TempDir(), "--api-listen", freeAddr(t), "--name", "root", "--tunnel-shards", "3")

	type region struct {
		name, dataDir, api, listen, enroll string
		c                                  *cloud
	}
	regions := []*region{{name: "region-a"}, {name: "region-b"}}
	for _, r := range regions {
		r.dataDir, r.api, r.listen = t.TempDir(), freeAddr(t), freeUDPAddr(t)
		r.enroll = tokenFile(t, root.kubeconfig, root.tunnel, r.name, "--level", "--tags", "tier=region")
	}
	startRegion := func(r *region) {
		r.c = startCloud(t, "--data-dir", r.dataDir, "--api-listen", r.api, "--listen", r.listen, "--enroll-file", r.enroll, "--return-every", "1s")
	}
	for _, r := range regions {
		startRegion(r)
	}

	// Leaves: half in berlin, half in paris, under each region; each a
	// box (ote init) that notices a silent parent after 3s and looks for
	// its own every second when it is on an alternate.
	var leaves []*leaf
	for _, r := range regions {
		tok := tokenFile(t, r.c.kubeconfig, r.listen, "", "--uses", "0")
		for i := range perRegion {
			site := "berlin"
			if i%2 == 1 {
				site = "paris"
			}
			l := &leaf{name: fmt.Sprintf("%s-%02d", r.name[len(r.name)-1:], i), region: r.name, tags: "site=" + site + "-" + r.name, root: t.TempDir()}
			b, _ := os.ReadFile(tok)
			writeBootFile(t, l.root, "enroll.yaml", fmt.Sprintf("%sname: %s\ntags: {site: %s-%s}\n", b, l.name, site, r.name))
			writeBootFile(t, l.root, "config.yaml", "uplink: {lostAfter: 3s, returnEvery: 1s}\n")
			leaves = append(leaves, l)
		}
	}
	for _, l := range leaves {
		l.box = startBox(t, l.root)
	}
	all := len(leaves) + len(regions)

	// The root sees the whole tree with next hops; each region its own.
	topology := func(kubeconfig string, n int, want func(name string) (ecView, bool)) func() bool {
		return func() bool {
			got := edgeClusters(t, kubeconfig)
			for name, v := range got {
				if w, ok := want(name); !ok || v != w {
					return false
				}
			}
			return len(got) == n
		}
	}
	home := func(name string) (ecView, bool) {
		if strings.HasPrefix(name, "region-") {
			return ecView{"Connected", name, ""}, true
		}
		for _, l := range leaves {
			if l.name == name {
				return ecView{"Connected", l.region, l.region}, true
			}
		}
		return ecView{}, false
	}
	leafStates := func() string {
		var s []string
		for _, l := range leaves {
			r, _ := l.state()
			s = append(s, fmt.Sprintf("%s: %s via %s %v %s", l.name, r.Phase, r.Parent, r.Alternates, r.Error))
		}
		return strings.Join(s, "\n")
	}
	eventually(t, "the root's view of the tree", 90*time.Second, topology(root.kubeconfig, all, home), func() string {
		return fmt.Sprint(edgeClusters(t, root.kubeconfig), "\n", leafStates())
	})
	for _, r := range regions {
		eventually(t, r.name+"'s view of its subtree", 30*time.Second, topology(r.c.kubeconfig, perRegion, func(name string) (ecView, bool) {
			for _, l := range leaves {
				if l.name == name && l.region == r.name {
					return ecView{"Connected", name, ""}, true
				}
			}
			return ecView{}, false
		}), func() string { return fmt.Sprint(edgeClusters(t, r.c.kubeconfig)) })
	}

	// A deployment at the root for every berlin.
	mustKubectl(t, root.kubeconfig, `
apiVersion: ote.dev/v1alpha1
kind: ClusterDeployment
metadata: {name: hello, namespace: default}
spec:
  clusterSelector: {tags: ["site=berlin-*"]}
  manifests: [{apiVersion: v1, kind: ConfigMap, metadata: {name: hello}, data: {greeting: hallo}}]
`, "apply", "-f", "-")
	var berlins []string
	for _, l := range leaves {
		if strings.Contains(l.tags, "berlin") {
			berlins = append(berlins, l.name)
		}
	}
	slices.Sort(berlins)
	holds := func(l *leaf, dep string) bool {
		_, d := l.state()
		if d == nil {
			return false
		}
		for _, x := range d.Deployments {
			if x.Name == dep && slices.Contains(x.Targets, l.name) {
				return true
			}
		}
		return false
	}
	holdings := func(dep string) func() string {
		return func() string {
			var s []string
			for _, l := range leaves {
				s = append(s, fmt.Sprintf("%s=%v", l.name, holds(l, dep)))
			}
			return strings.Join(s, " ")
		}
	}
	complete := func(kubeconfig, dep string, want []string) func() bool {
		return func() bool {
			targeted, delivered, clusters := cdStatusOf(t, kubeconfig, dep)
			var exp []string
			for _, n := range want {
				exp = append(exp, n+"=Received")
			}
			return targeted == len(want) && delivered == len(want) && clusters == strings.Join(exp, ",")
		}
	}
	describe := func(kubeconfig, dep string) func() string {
		return func() string {
			targeted, delivered, clusters := cdStatusOf(t, kubeconfig, dep)
			return fmt.Sprintf("targeted %d, delivered %d: %s", targeted, delivered, clusters)
		}
	}
	eventually(t, "the root's deployment on every berlin", 60*time.Second, func() bool {
		for _, l := range leaves {
			if holds(l, "hello") != strings.Contains(l.tags, "berlin") {
				return false
			}
		}
		return true
	}, holdings("hello"))
	eventually(t, "complete status at the root", 30*time.Second, complete(root.kubeconfig, "hello", berlins), describe(root.kubeconfig, "hello"))

	// A deployment made at region-b reaches region-b's paris leaves only.
	mustKubectl(t, regions[1].c.kubeconfig, `
apiVersion: ote.dev/v1alpha1
kind: ClusterDeployment
metadata: {name: local, namespace: default}
spec:
  clusterSelector: {tags: ["site=paris-*"]}
  manifests: [{apiVersion: v1, kind: ConfigMap, metadata: {name: local}}]
`, "apply", "-f", "-")
	eventually(t, "region-b's own deployment", 60*time.Second, func() bool {
		for _, l := range leaves {
			if holds(l, "local") != (l.region == "region-b" && strings.Contains(l.tags, "paris")) {
				return false
			}
		}
		return true
	}, holdings("local"))

	// Stop region-a: its leaves fail over (to region-b, the first
	// alternate), and the root's status stays complete.
	for _, l := range leaves {
		if r, _ := l.state(); len(r.Alternates) == 0 {
			t.Fatalf("%s learned no alternates: %+v", l.name, r)
		}
	}
	regions[0].c.stop(t)
	stopped := time.Now()
	failedOver := func(name string) (ecView, bool) {
		if name == "region-a" {
			return ecView{"Disconnected", "region-a", ""}, true
		}
		v, ok := home(name)
		if ok && v.nextHop == "region-a" {
			v.nextHop, v.parent = "region-b", "region-b"
		}
		return v, ok
	}
	eventually(t, "region-a's leaves connected elsewhere", 30*time.Second, func() bool {
		for _, l := range leaves {
			if r, _ := l.state(); r.Phase != uplink.PhaseConnected || r.Parent == "region-a" {
				return false
			}
		}
		return true
	}, leafStates)
	t.Logf("region-a's leaves reconnected %v after it stopped", time.Since(stopped).Round(10*time.Millisecond))
	eventually(t, "the root's view after the failover", 60*time.Second, topology(root.kubeconfig, all, failedOver), func() string {
		var s []string
		for _, l := range leaves {
			r, _ := l.state()
			s = append(s, fmt.Sprintf("%s: %s %s %v %s", l.name, r.Phase, r.Parent, r.Alternates, r.Error))
		}
		return fmt.Sprint(edgeClusters(t, root.kubeconfig), edgeClusters(t, regions[1].c.kubeconfig), s)
	})
	eventually(t, "complete status at the root after the failover", 30*time.Second, complete(root.kubeconfig, "hello", berlins), describe(root.kubeconfig, "hello"))

	// Start region-a again: its leaves return and the topology is restored.
	startRegion(regions[0])
	eventually(t, "the root's view after region-a is back", 90*time.Second, topology(root.kubeconfig, all, home), func() string {
		return fmt.Sprint(edgeClusters(t, root.kubeconfig))
	})
	eventually(t, "region-b forgot its visitors", 30*time.Second, func() bool { return len(edgeClusters(t, regions[1].c.kubeconfig)) == perRegion },
		func() string { return fmt.Sprint(edgeClusters(t, regions[1].c.kubeconfig)) })
	eventually(t, "complete status at the root after the return", 30*time.Second, complete(root.kubeconfig, "hello", berlins), describe(root.kubeconfig, "hello"))

	// Deleting a leaf's EdgeCluster at the root revokes it down the tree:
	// its region closes its tunnel and refuses it, and marks it Revoked.
	victim := leaves[len(leaves)-1]
	mustKubectl(t, root.kubeconfig, "", "delete", "ec", victim.name)
	eventually(t, "the revocation at "+victim.region, 30*time.Second, func() bool {
		r, _ := victim.state()
		return r.Phase != uplink.PhaseConnected && strings.Contains(r.Error, "revoked") &&
			edgeClusters(t, regions[1].c.kubeconfig)[victim.name].phase == "Revoked"
	}, leafStates)
	if _, ok := edgeClusters(t, root.kubeconfig)[victim.name]; ok {
		t.Errorf("the root shows %s again after deleting it", victim.name)
	}

	// Kill region-b outright: nothing tells its leaves. They take it for
	// lost after 3s of silence and fail over to region-a, and the root
	// routes to them through region-a.
	regions[1].c.cmd.Process.Signal(syscall.SIGKILL)
	<-regions[1].c.exited
	killed := time.Now()
	orphans := func() []*leaf {
		var out []*leaf
		for _, l := range leaves {
			if l.region == "region-b" && l != victim {
				out = append(out, l)
			}
		}
		return out
	}()
	eventually(t, "region-b's leaves connected elsewhere after it was killed", 60*time.Second, func() bool {
		for _, l := range orphans {
			if r, _ := l.state(); r.Phase != uplink.PhaseConnected || r.Parent != "region-a" {
				return false
			}
		}
		return true
	}, leafStates)
	t.Logf("region-b's leaves reconnected %v after it was killed", time.Since(killed).Round(10*time.Millisecond))
	eventually(t, "the root's route to them through region-a", 60*time.Second, func() bool {
		ecs := edgeClusters(t, root.kubeconfig)
		for _, l := range orphans {
			if v := ecs[l.name]; v.phase != "Connected" || v.nextHop != "region-a" {
				return false
			}
		}
		return true
	}, func() string { return fmt.Sprint(edgeClusters(t, root.kubeconfig)) })
}
