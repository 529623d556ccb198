package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"

	"github.com/ote-edge/ote/cloud/crds"
	"github.com/ote-edge/ote/cloud/selector"
	"github.com/ote-edge/ote/cloud/tunnel"
)

// deployment is a ClusterDeployment as the sync needs it.
type deployment struct {
	namespace, name string
	sel             *selector.Selector
	manifests       []json.RawMessage
	// inherited deployments came from this level's parent, their targets
	// resolved there: their state on each target is reported up.
	inherited bool
	targets   []string
}

// InheritedLabel marks a ClusterDeployment that a level holds for its
// parent; its value is the parent's name.
const InheritedLabel = crds.Group + "/inherited-from"

func (d *deployment) key() string { return d.namespace + "/" + d.name }

// clusterState is one deployment's state on one cluster.
type clusterState struct {
	Phase    string // Delivered, Received, Applied, Failed
	Revision int64
	Message  string
	Since    time.Time
}

// syncer keeps the ClusterDeployments of this level, tells child
// sessions when they change, and rolls per-cluster state up into each
// deployment's status.
type syncer struct {
	client dynamic.NamespaceableResourceInterface
	log    *slog.Logger

	mu      sync.Mutex
	deps    map[string]*deployment
	changed chan struct{} // closed and replaced at every change
	states  map[string]map[string]clusterState
	dirty   map[string]bool
	// onRecord is called, without the lock, when a state changes.
	onRecord func()
}

func newSyncer(client dynamic.Interface, log *slog.Logger) *syncer {
	return &syncer{
		client: client.Resource(crds.ClusterDeployments), log: log,
		deps: map[string]*deployment{}, changed: make(chan struct{}),
		states: map[string]map[string]clusterState{}, dirty: map[string]bool{},
		onRecord: func() {},
	}
}

// watch mirrors the ClusterDeployments until ctx ends.
func (s *syncer) watch(ctx context.Context) {
	listWatch(ctx, s.client, s.log, "ClusterDeployments", func(items []unstructured.Unstructured) {
		fresh := map[string]*deployment{}
		for i := range items {
			if d := s.parse(&items[i]); d != nil {
				fresh[d.key()] = d
			}
		}
		s.mu.Lock()
		s.deps = fresh
		s.notifyLocked()
		s.mu.Unlock()
	}, func(typ watch.EventType, obj *unstructured.Unstructured) {
		s.mu.Lock()
		key := obj.GetNamespace() + "/" + obj.GetName()
		switch typ {
		case watch.Deleted:
			delete(s.deps, key)
			delete(s.states, key)
		case watch.Added, watch.Modified:
			if d := s.parse(obj); d != nil {
				s.deps[key] = d
				s.dirty[key] = true
			}
		}
		s.notifyLocked()
		s.mu.Unlock()
		s.onRecord()
	})
}

func (s *syncer) parse(obj *unstructured.Unstructured) *deployment {
	spec, _, _ := unstructured.NestedMap(obj.Object, "spec")
	raw, _ := json.Marshal(spec)
	var parsed struct {
		ClusterSelector selector.Spec     `json:"clusterSelector"`
		Manifests       []json.RawMessage `json:"manifests"`
	}
	if err := json.Unmarshal(raw, &parsed); err != nil {
		s.log.Warn("ClusterDeployment spec", "deployment", obj.GetNamespace()+"/"+obj.GetName(), "err", err)
		return nil
	}
	sel, err := selector.Compile(parsed.ClusterSelector)
	if err != nil {
		s.log.Warn("ClusterDeployment selector", "deployment", obj.GetNamespace()+"/"+obj.GetName(), "err", err)
		return nil
	}
	d := &deployment{namespace: obj.GetNamespace(), name: obj.GetName(), sel: sel, manifests: parsed.Manifests}
	if _, ok := obj.GetLabels()[InheritedLabel]; ok {
		d.inherited, d.targets = true, parsed.ClusterSelector.Names
	}
	return d
}

// notify wakes the senders of the child sessions: their sets may have
// changed.
func (s *syncer) notify() {
	s.mu.Lock()
	s.notifyLocked()
	s.mu.Unlock()
}

func (s *syncer) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// changes is a channel closed at the next change of the sets.
func (s *syncer) changes() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

// desired returns the desired set of a child whose subtree holds members
// (cluster names with their tags).
func (s *syncer) desired(members map[string]map[string]string) []tunnel.Deployment {
	s.mu.Lock()
	defer s.mu.Unlock()
	keys := make([]string, 0, len(s.deps))
	for k := range s.deps {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	names := make([]string, 0, len(members))
	for n := range members {
		names = append(names, n)
	}
	sort.Strings(names)
	out := []tunnel.Deployment{}
	for _, k := range keys {
		d := s.deps[k]
		var targets []string
		for _, n := range names {
			if d.sel.Matches(n, members[n]) {
				targets = append(targets, n)
			}
		}
		if len(targets) > 0 {
			out = append(out, tunnel.Deployment{Namespace: d.namespace, Name: d.name, Targets: targets, Manifests: d.manifests})
		}
	}
	return out
}

// inheritedStates is the state of every deployment from the parent on
// each of its targets: self, this level itself, holds what it receives.
func (s *syncer) inheritedStates(self string) []tunnel.DeploymentStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []tunnel.DeploymentStatus
	for key, d := range s.deps {
		if !d.inherited {
			continue
		}
		for _, t := range d.targets {
			ds := tunnel.DeploymentStatus{Namespace: d.namespace, Name: d.name, Cluster: t}
			if st, ok := s.states[key][t]; ok {
				ds.Phase, ds.Revision, ds.Message = st.Phase, st.Revision, st.Message
			} else if t == self {
				ds.Phase = "Received"
			} else {
				continue
			}
			out = append(out, ds)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Namespace+"/"+a.Name != b.Namespace+"/"+b.Name {
			return a.Namespace+"/"+a.Name < b.Namespace+"/"+b.Name
		}
		return a.Cluster < b.Cluster
	})
	return out
}

// record notes a deployment's state on a cluster.
func (s *syncer) record(key, cluster string, st clusterState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.deps[key]; !ok {
		return
	}
	m := s.states[key]
	if m == nil {
		m = map[string]clusterState{}
		s.states[key] = m
	}
	if old, ok := m[cluster]; ok && old.Revision == st.Revision && (old.Phase == st.Phase || st.Phase == "Delivered") {
		return // the same, or an acknowledgement after the cluster's own report
	}
	st.Since = time.Now().UTC()
	m[cluster] = st
	s.dirty[key] = true
	if s.deps[key].inherited {
		// Runs before the deferred unlock; onRecord takes only its own lock.
		defer s.onRecord()
	}
}

// maxClustersInStatus bounds status.clusters; the counts cover all.
const maxClustersInStatus = 100

// flush writes the status of every changed deployment, every interval,
// counting targets among the clusters that registry lists.
func (s *syncer) flush(ctx context.Context, reg *registry, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.mu.Lock()
		if len(s.dirty) == 0 {
			s.mu.Unlock()
			continue
		}
		type job struct {
			d      *deployment
			states map[string]clusterState
		}
		var jobs []job
		for key := range s.dirty {
			if d, ok := s.deps[key]; ok {
				states := map[string]clusterState{}
				for c, st := range s.states[key] {
					states[c] = st
				}
				jobs = append(jobs, job{d, states})
			}
		}
		s.dirty = map[string]bool{}
		s.mu.Unlock()

		clusters := map[string]map[string]string{}
		reg.each(func(name string, e *ecEntry) { clusters[name] = e.labels })
		for _, j := range jobs {
			if err := s.writeStatus(ctx, j.d, j.states, clusters); err != nil {
				s.log.Warn("ClusterDeployment status", "deployment", j.d.key(), "err", err)
				s.mu.Lock()
				s.dirty[j.d.key()] = true
				s.mu.Unlock()
			}
		}
	}
}

func (s *syncer) writeStatus(ctx context.Context, d *deployment, states map[string]clusterState, clusters map[string]map[string]string) error {
	type entry struct {
		Name               string `json:"name"`
		Phase              string `json:"phase"`
		Revision           int64  `json:"revision,omitempty"`
		Message            string `json:"message,omitempty"`
		LastTransitionTime string `json:"lastTransitionTime,omitempty"`
	}
	var targeted, delivered, applied, failed int
	var entries []entry
	names := make([]string, 0, len(clusters))
	for n := range clusters {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		if !d.sel.Matches(name, clusters[name]) {
			continue
		}
		targeted++
		st, ok := states[name]
		e := entry{Name: name, Phase: "Pending"}
		if ok {
			e = entry{Name: name, Phase: st.Phase, Revision: st.Revision, Message: st.Message, LastTransitionTime: st.Since.Format(time.RFC3339)}
			switch st.Phase {
			case "Applied":
				applied++
				delivered++
			case "Failed":
				failed++
				delivered++
			default:
				delivered++
			}
		}
		entries = append(entries, e)
	}
	// Failures first, so that the bounded list keeps what matters.
	sort.SliceStable(entries, func(i, j int) bool { return entries[i].Phase == "Failed" && entries[j].Phase != "Failed" })
	if len(entries) > maxClustersInStatus {
		entries = entries[:maxClustersInStatus]
	}
	patch, _ := json.Marshal(map[string]any{"status": map[string]any{
		"targeted": targeted, "delivered": delivered, "applied": applied, "failed": failed, "clusters": entries,
	}})
	_, err := s.client.Namespace(d.namespace).Patch(ctx, d.name, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: crds.FieldManager}, "status")
	if err != nil {
		return fmt.Errorf("patch status: %w", err)
	}
	return nil
}
