package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"regexp"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"

	"github.com/ote-edge/ote/cloud/crds"
	"github.com/ote-edge/ote/cloud/enrollment"
	"github.com/ote-edge/ote/cloud/tunnel"
)

// registry keeps the EdgeCluster objects of this level: it writes them
// and mirrors them in memory (list, then watch), so that routing and
// reports read no API. Every cluster of this level's subtree has one: the
// direct children and, reported from below, the clusters beneath them.
type registry struct {
	client dynamic.NamespaceableResourceInterface
	log    *slog.Logger

	mu      sync.Mutex
	entries map[string]*ecEntry
	synced  chan struct{} // closed after the first list
	// onChange is called, without the lock, after every change; onDelete
	// with the name of every deleted object.
	onChange func()
	onDelete func(name string)
}

// ecEntry is what the registry mirrors of one EdgeCluster.
type ecEntry struct {
	labels       map[string]string
	parent       string // spec.parent: empty for a direct child
	phase        string
	nextHop      string
	subtreeSize  int64
	agentVersion string
	lastSeen     time.Time
	notAfter     time.Time
	mark         desiredMark
}

// visitorAnnotation marks the EdgeCluster of a child enrolled elsewhere in
// the tree that connected here, after a failover.
const visitorAnnotation = crds.Group + "/visitor"

func newRegistry(client dynamic.Interface, log *slog.Logger) *registry {
	return &registry{
		client: client.Resource(crds.EdgeClusters), log: log,
		entries: map[string]*ecEntry{}, synced: make(chan struct{}),
		onChange: func() {}, onDelete: func(string) {},
	}
}

// watch mirrors the EdgeClusters until ctx ends.
func (r *registry) watch(ctx context.Context) {
	first := true
	listWatch(ctx, r.client, r.log, "EdgeClusters", func(items []unstructured.Unstructured) {
		fresh := make(map[string]*ecEntry, len(items))
		for i := range items {
			fresh[items[i].GetName()] = parseEntry(&items[i])
		}
		r.mu.Lock()
		var gone []string
		for name := range r.entries {
			if _, ok := fresh[name]; !ok {
				gone = append(gone, name)
			}
		}
		r.entries = fresh
		r.mu.Unlock()
		if first {
			close(r.synced)
			first = false
		}
		for _, name := range gone {
			r.onDelete(name)
		}
		r.onChange()
	}, func(typ watch.EventType, obj *unstructured.Unstructured) {
		name := obj.GetName()
		r.mu.Lock()
		if typ == watch.Deleted {
			delete(r.entries, name)
		} else {
			r.entries[name] = parseEntry(obj)
		}
		r.mu.Unlock()
		if typ == watch.Deleted {
			r.onDelete(name)
		}
		r.onChange()
	})
}

func parseEntry(obj *unstructured.Unstructured) *ecEntry {
	e := &ecEntry{labels: obj.GetLabels()}
	e.parent, _, _ = unstructured.NestedString(obj.Object, "spec", "parent")
	e.phase, _, _ = unstructured.NestedString(obj.Object, "status", "phase")
	e.nextHop, _, _ = unstructured.NestedString(obj.Object, "status", "nextHop")
	e.subtreeSize, _, _ = unstructured.NestedInt64(obj.Object, "status", "subtreeSize")
	e.agentVersion, _, _ = unstructured.NestedString(obj.Object, "status", "agentVersion")
	ts := func(field string) time.Time {
		s, _, _ := unstructured.NestedString(obj.Object, "status", field)
		t, _ := time.Parse(time.RFC3339, s)
		return t
	}
	e.lastSeen, e.notAfter = ts("lastSeen"), ts("certificateNotAfter")
	e.mark.revision, _, _ = unstructured.NestedInt64(obj.Object, "status", "desiredRevision")
	e.mark.hash, _, _ = unstructured.NestedString(obj.Object, "status", "desiredHash")
	return e
}

// get returns a copy of a cluster's entry.
func (r *registry) get(name string) (ecEntry, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.entries[name]
	if !ok {
		return ecEntry{}, false
	}
	return *e, true
}

// labels returns a cluster's tags, nil for an unknown cluster.
func (r *registry) labels(name string) map[string]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e, ok := r.entries[name]; ok {
		return e.labels
	}
	return nil
}

// each calls f for every entry, under the lock.
func (r *registry) each(f func(name string, e *ecEntry)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for n, e := range r.entries {
		f(n, e)
	}
}

// newObject is an EdgeCluster to create.
func newObject(name string, tags map[string]string, parent string, visitor bool) *unstructured.Unstructured {
	labels := map[string]any{}
	for k, v := range tags {
		labels[k] = v
	}
	meta := map[string]any{"name": name, "labels": labels}
	if visitor {
		meta["annotations"] = map[string]any{visitorAnnotation: "true"}
	}
	spec := map[string]any{}
	if parent != "" {
		spec["parent"] = parent
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": crds.Group + "/" + crds.Version,
		"kind":       "EdgeCluster",
		"metadata":   meta,
		"spec":       spec,
	}}
}

// create registers a cluster with its first status.
func (r *registry) create(ctx context.Context, obj *unstructured.Unstructured, status map[string]any) error {
	if _, err := r.client.Create(ctx, obj, metav1.CreateOptions{FieldManager: crds.FieldManager}); err != nil {
		return err
	}
	return r.setStatus(ctx, obj.GetName(), status)
}

func (r *registry) delete(ctx context.Context, name string) error {
	err := r.client.Delete(ctx, name, metav1.DeleteOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

func (r *registry) exists(ctx context.Context, name string) (bool, error) {
	_, err := r.client.Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	return err == nil, err
}

// setStatus merges fields into the EdgeCluster's status.
func (r *registry) setStatus(ctx context.Context, name string, fields map[string]any) error {
	patch, err := json.Marshal(map[string]any{"status": fields})
	if err != nil {
		return err
	}
	_, err = r.client.Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: crds.FieldManager}, "status")
	return err
}

// setSpec merges fields into the EdgeCluster's spec.
func (r *registry) setSpec(ctx context.Context, name string, fields map[string]any) error {
	patch, err := json.Marshal(map[string]any{"spec": fields})
	if err != nil {
		return err
	}
	_, err = r.client.Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: crds.FieldManager})
	return err
}

var clusterNameRe = regexp.MustCompile(`^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$`)

// clusterName is the name the box asked for, or the token's prefix with
// the device id.
func clusterName(req *tunnel.EnrollRequest, rec enrollment.Record) (string, error) {
	name := req.Name
	if name == "" && rec.NamePrefix != "" && req.DeviceID != "" {
		id := req.DeviceID
		if len(id) > 8 {
			id = id[:8]
		}
		name = rec.NamePrefix + "-" + id
	}
	if name == "" {
		return "", errNoName
	}
	if !clusterNameRe.MatchString(name) {
		return "", fmt.Errorf("%q is not a cluster name: lowercase letters, digits, dots and dashes", name)
	}
	return name, nil
}

// desiredMark is what the registry keeps of a cluster's desired set.
type desiredMark struct {
	revision int64
	hash     string
}

// desiredMark is a cluster's mark from the mirror, or from the API when
// the mirror has not seen the cluster yet (it has just enrolled). A mark
// the mirror has not caught up with is older than the child's: the
// sender then writes a newer one and sends nothing.
func (r *registry) desiredMark(ctx context.Context, name string) (desiredMark, error) {
	if e, ok := r.get(name); ok {
		return e.mark, nil
	}
	obj, err := r.client.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return desiredMark{}, err
	}
	return parseEntry(obj).mark, nil
}
