package uplink

import (
	"maps"
	"math/rand/v2"
	"reflect"
	"slices"
	"time"

	"github.com/ote-edge/ote/cloud/tunnel"
)

// maxReportEntries bounds the entries of one Status frame, far below the
// frame size limit.
const maxReportEntries = 1000

// reportState is what a child reported to one parent: the frames sent in
// the current report, numbered from its Reset, and the diff they leave.
type reportState struct {
	diff   reportDiff
	epoch  uint64
	seq    int64 // frames sent since the Reset
	broken bool  // a frame failed to go: the diff is ahead of the parent
}

// resumes says whether a parent that applied up to mark holds all of this
// report, so that changes can follow.
func (rs *reportState) resumes(mark tunnel.ReportMark) bool {
	return rs.epoch != 0 && !rs.broken && mark == tunnel.ReportMark{Epoch: rs.epoch, Seq: rs.seq}
}

// restart begins a new report: the next frames are the whole of it.
func (rs *reportState) restart() {
	*rs = reportState{epoch: rand.Uint64() | 1}
}

// reportDiff turns successive reports into Status frames: the first whole,
// between Reset and Sync; later ones as changes to what was sent.
type reportDiff struct {
	started  bool
	clusters map[string]tunnel.ClusterStatus
	deps     map[string]tunnel.DeploymentStatus
	revoked  map[string]time.Time
}

// same compares cluster reports without their last-seen time, which moves
// on every acknowledgement and is not worth a frame by itself.
func same(a, b tunnel.ClusterStatus) bool {
	a.LastSeen, b.LastSeen = time.Time{}, time.Time{}
	return reflect.DeepEqual(a, b)
}

func (d *reportDiff) frames(st *tunnel.Status) []*tunnel.Status {
	first := !d.started
	if first {
		d.started = true
		d.clusters, d.deps, d.revoked = map[string]tunnel.ClusterStatus{}, map[string]tunnel.DeploymentStatus{}, map[string]time.Time{}
	}
	var clusters []tunnel.ClusterStatus
	var deps []tunnel.DeploymentStatus
	var removed []string
	seen := map[string]bool{}
	for _, cs := range st.Clusters {
		seen[cs.Name] = true
		if old, ok := d.clusters[cs.Name]; ok && same(old, cs) {
			continue
		}
		d.clusters[cs.Name] = cs
		clusters = append(clusters, cs)
	}
	for _, name := range slices.Sorted(maps.Keys(d.clusters)) {
		if !seen[name] {
			delete(d.clusters, name)
			removed = append(removed, name)
		}
	}
	for _, ds := range st.Deployments {
		key := ds.Namespace + "/" + ds.Name + "/" + ds.Cluster
		if d.deps[key] == ds {
			continue
		}
		d.deps[key] = ds
		deps = append(deps, ds)
	}
	revoked := map[string]time.Time{}
	for n, at := range st.Revoked {
		if old, ok := d.revoked[n]; !ok || !old.Equal(at) {
			d.revoked[n], revoked[n] = at, at
		}
	}
	if !first && len(clusters)+len(deps)+len(removed)+len(revoked) == 0 {
		return nil
	}

	// Chunks: removals and revocations go with the first frame.
	var out []*tunnel.Status
	cur := &tunnel.Status{Reset: first, Removed: removed}
	if len(revoked) > 0 {
		cur.Revoked = revoked
	}
	n := len(removed) + len(revoked)
	flush := func() {
		out = append(out, cur)
		cur, n = &tunnel.Status{}, 0
	}
	for _, cs := range clusters {
		if n == maxReportEntries {
			flush()
		}
		cur.Clusters = append(cur.Clusters, cs)
		n++
	}
	for _, ds := range deps {
		if n == maxReportEntries {
			flush()
		}
		cur.Deployments = append(cur.Deployments, ds)
		n++
	}
	cur.Sync = true
	out = append(out, cur)
	return out
}
