package tests

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/ote-edge/ote/cloud/enrollment"
	"github.com/ote-edge/ote/cloud/tunnel"
)

// TestDesiredGoesAsChanges checks that a parent sends a child only what
// changed in its desired set: after a reconnect, for the set the child's
// Hello names, and within a session; and the whole set when the child
// holds another one or asks for it. After a reconnect the parent also
// tells the child the last frame of its report it applied, for the child
// to go on from (the child's side is tested in cloud/uplink).
func TestDesiredGoesAsChanges(t *testing.T) {
	builtBinary(t, "kube")
	c := startCloud(t, "--data-dir", t.TempDir(), "--api-listen", freeAddr(t))
	rc, _ := clientcmd.BuildConfigFromFlags("", c.kubeconfig)
	tok, err := (enrollment.Store{Client: kubernetes.NewForConfigOrDie(rc)}).Create(context.Background(), enrollment.Options{Uses: 1, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ch, err := enroll(t, c.tunnel, tok, "differ", nil)
	if err != nil {
		t.Fatal(err)
	}
	cd := func(name, greeting string) string {
		return `
apiVersion: ote.dev/v1alpha1
kind: ClusterDeployment
metadata: {name: ` + name + `, namespace: default}
spec:
  clusterSelector: {names: [differ]}
  manifests: [{apiVersion: v1, kind: ConfigMap, metadata: {name: ` + name + `}, data: {greeting: ` + greeting + `}}]
`
	}
	mustKubectl(t, c.kubeconfig, cd("alpha", "hallo")+"---"+cd("beta", "hej"), "apply", "-f", "-")

	var held *tunnel.Desired
	// next reads the next Desired within a session, applies it to what the
	// child holds and returns the frame as it came.
	next := func(r *tunnel.Reader) *tunnel.Desired {
		t.Helper()
		m, err := r.Read()
		d, ok := m.(*tunnel.Desired)
		if err != nil || !ok {
			t.Fatalf("read Desired: %#v, %v", m, err)
		}
		whole, err := d.Apply(held)
		if err != nil {
			t.Fatalf("apply revision %d (base %d) to the held set: %v", d.Revision, d.Base, err)
		}
		held = whole
		return d
	}
	keys := func(deps []tunnel.Deployment) []string {
		var out []string
		for _, d := range deps {
			out = append(out, d.Key())
		}
		return out
	}
	hello := func() *tunnel.Hello {
		h := &tunnel.Hello{CapabilityVersion: tunnel.CapabilityVersion, AgentVersion: "test"}
		if held != nil {
			h.Revision, h.Hash = held.Revision, tunnel.DesiredHash(held.Deployments, held.Revoked)
		}
		return h
	}

	// First connect: the whole set.
	e, err := ch.connectWith(t, c.tunnel, hello())
	if err != nil {
		t.Fatal(err)
	}
	conn, str, r := e.conn, e.str, e.r
	str.SetReadDeadline(time.Now().Add(30 * time.Second))
	if d := next(r); d.Base != 0 || !slices.Equal(keys(d.Deployments), []string{"default/alpha", "default/beta"}) {
		t.Fatalf("first set: base %d, %v; want whole, alpha and beta", d.Base, keys(d.Deployments))
	}
	tunnel.WriteFrame(str, &tunnel.Ack{Revision: held.Revision})
	// Its report, frame 1 of epoch 42; the parent will say it has it.
	mark := tunnel.ReportMark{Epoch: 42, Seq: 1}
	tunnel.WriteFrame(str, &tunnel.Status{Reset: true, Sync: true, Mark: mark, Deployments: []tunnel.DeploymentStatus{
		{Namespace: "default", Name: "alpha", Cluster: "differ", Revision: held.Revision, Phase: "Received"},
	}})
	eventually(t, "the report applied", 30*time.Second, func() bool {
		_, _, clusters := cdStatusOf(t, c.kubeconfig, "alpha")
		return clusters == "differ=Received"
	}, func() string { _, _, clusters := cdStatusOf(t, c.kubeconfig, "alpha"); return clusters })
	conn.CloseWithError(0, "")

	// Offline: beta changes, gamma comes. After the reconnect only those
	// two travel, as changes to the set the child holds (in one frame or
	// two, as the parent sees them).
	mustKubectl(t, c.kubeconfig, cd("beta", "moin")+"---"+cd("gamma", "ciao"), "apply", "-f", "-")
	e, err = ch.connectWith(t, c.tunnel, hello())
	if err != nil {
		t.Fatal(err)
	}
	conn, str, r = e.conn, e.str, e.r
	defer conn.CloseWithError(0, "")
	if e.welcome.Report != mark {
		t.Errorf("Welcome.Report = %+v, want %+v: the last report frame the parent applied", e.welcome.Report, mark)
	}
	str.SetReadDeadline(time.Now().Add(30 * time.Second))
	for {
		base := held.Revision
		d := next(r)
		if d.Base != base || len(d.Removed) != 0 || slices.Contains(keys(d.Deployments), "default/alpha") {
			t.Fatalf("after reconnect: base %d (want %d), sent %v, removed %v; want changes to beta and gamma only", d.Base, base, keys(d.Deployments), d.Removed)
		}
		if slices.Equal(keys(held.Deployments), []string{"default/alpha", "default/beta", "default/gamma"}) && strings.Contains(string(held.Deployments[1].Manifests[0]), "moin") {
			break
		}
	}
	tunnel.WriteFrame(str, &tunnel.Ack{Revision: held.Revision})

	// In the session: alpha goes; only its removal travels.
	mustKubectl(t, c.kubeconfig, "", "delete", "clusterdeployment", "alpha")
	base := held.Revision
	d := next(r)
	if d.Base != base || len(d.Deployments) != 0 || !slices.Equal(d.Removed, []string{"default/alpha"}) {
		t.Fatalf("after delete: base %d (want %d), sent %v, removed %v; want alpha removed only", d.Base, base, keys(d.Deployments), d.Removed)
	}
	tunnel.WriteFrame(str, &tunnel.Ack{Revision: held.Revision})

	// A child that could not apply a change asks for the whole set.
	tunnel.WriteFrame(str, &tunnel.Ack{Revision: held.Revision, Resend: true})
	held = nil
	if d := next(r); d.Base != 0 || !slices.Equal(keys(d.Deployments), []string{"default/beta", "default/gamma"}) {
		t.Fatalf("on resend: base %d, %v; want the whole set, beta and gamma", d.Base, keys(d.Deployments))
	}
	conn.CloseWithError(0, "")

	// A child holding a set the parent does not know of gets the whole set.
	mustKubectl(t, c.kubeconfig, cd("delta", "hei"), "apply", "-f", "-")
	stranger := &tunnel.Desired{Revision: held.Revision, Deployments: []tunnel.Deployment{{Namespace: "default", Name: "other"}}}
	held = stranger
	e, err = ch.connectWith(t, c.tunnel, hello())
	if err != nil {
		t.Fatal(err)
	}
	defer e.conn.CloseWithError(0, "")
	e.str.SetReadDeadline(time.Now().Add(30 * time.Second))
	held = nil
	if d := next(e.r); d.Base != 0 || !slices.Equal(keys(d.Deployments), []string{"default/beta", "default/delta", "default/gamma"}) {
		t.Fatalf("unknown held set: base %d, %v; want the whole set", d.Base, keys(d.Deployments))
	}
}
