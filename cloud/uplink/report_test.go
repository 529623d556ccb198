package uplink

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/ote-edge/ote/cloud/tunnel"
)

func TestReportDiff(t *testing.T) {
	var d reportDiff
	st := &tunnel.Status{
		Clusters:    []tunnel.ClusterStatus{{Name: "a", Phase: "Connected"}, {Name: "b", Phase: "Connected"}},
		Deployments: []tunnel.DeploymentStatus{{Namespace: "ns", Name: "x", Cluster: "a", Phase: "Received", Revision: 1}},
	}
	f := d.frames(st)
	if len(f) != 1 || !f[0].Reset || !f[0].Sync || len(f[0].Clusters) != 2 || len(f[0].Deployments) != 1 {
		t.Fatalf("first report = %+v, want everything between Reset and Sync", f)
	}
	if f := d.frames(st); f != nil {
		t.Errorf("same report again = %+v, want nothing", f)
	}
	// A new last-seen time alone is not news.
	st.Clusters[0].LastSeen = time.Now()
	if f := d.frames(st); f != nil {
		t.Errorf("last-seen change = %+v, want nothing", f)
	}
	// A phase change, a removal and a revocation are.
	st.Clusters = []tunnel.ClusterStatus{{Name: "a", Phase: "Disconnected"}}
	st.Revoked = map[string]time.Time{"c": time.Unix(1, 0)}
	f = d.frames(st)
	if len(f) != 1 || f[0].Reset || len(f[0].Clusters) != 1 || f[0].Clusters[0].Phase != "Disconnected" ||
		len(f[0].Removed) != 1 || f[0].Removed[0] != "b" || len(f[0].Revoked) != 1 || len(f[0].Deployments) != 0 {
		t.Errorf("changes = %+v", f)
	}
}

func TestReportDiffChunks(t *testing.T) {
	var d reportDiff
	st := &tunnel.Status{}
	for i := range 2500 {
		st.Clusters = append(st.Clusters, tunnel.ClusterStatus{Name: fmt.Sprintf("c-%d", i), Phase: "Connected"})
	}
	f := d.frames(st)
	if len(f) != 3 || !f[0].Reset || f[0].Sync || f[1].Reset || f[1].Sync || !f[2].Sync {
		t.Fatalf("%d frames; want 3, Reset on the first and Sync on the last", len(f))
	}
	n := 0
	for _, x := range f {
		n += len(x.Clusters)
		var buf bytes.Buffer
		if err := tunnel.WriteFrame(&buf, x); err != nil {
			t.Errorf("frame: %v", err)
		}
	}
	if n != 2500 {
		t.Errorf("%d clusters in the frames, want 2500", n)
	}
}
