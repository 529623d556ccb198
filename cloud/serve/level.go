package serve

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/ote-edge/ote/cloud/controller"
	"github.com/ote-edge/ote/cloud/crds"
	"github.com/ote-edge/ote/cloud/enrollment"
	"github.com/ote-edge/ote/cloud/tunnel"
	"github.com/ote-edge/ote/cloud/uplink"
)

// A lower level of the tree keeps its uplink's records in its own API
// server, in the ote-system namespace:
//
//   - Secret ote-uplink: its identity (intermediate CA and key);
//   - Secret ote-uplink-desired: the desired set its parent gave it;
//   - ConfigMap ote-uplink-status: the uplink's state, for kubectl.
//
// The deployments of the desired set become ClusterDeployments of this
// level, labelled with controller.InheritedLabel and selecting their
// targets by name, so that this level's own controller routes them on
// down and kubectl shows them here too.
const (
	identitySecret = "ote-uplink"
	desiredSecret  = "ote-uplink-desired"
	statusMap      = "ote-uplink-status"
	// inheritedManager owns the inherited ClusterDeployments.
	inheritedManager = "ote-parent"
)

type levelStore struct {
	cs  kubernetes.Interface
	dyn dynamic.Interface
	log *slog.Logger

	mu     sync.Mutex
	parent string                 // as the last Welcome named it
	ctl    *controller.Controller // set once it runs
}

func (l *levelStore) secret(ctx context.Context, name string) ([]byte, bool, error) {
	sec, err := l.cs.CoreV1().Secrets(enrollment.Namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	return sec.Data["json"], true, nil
}

func (l *levelStore) putSecret(ctx context.Context, name string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return l.tokens().PutSecret(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: map[string][]byte{"json": b}})
}

func (l *levelStore) tokens() enrollment.Store { return enrollment.Store{Client: l.cs} }

func (l *levelStore) Identity(ctx context.Context) (uplink.Identity, bool, error) {
	var id uplink.Identity
	b, ok, err := l.secret(ctx, identitySecret)
	if err != nil || !ok {
		return id, false, err
	}
	return id, true, json.Unmarshal(b, &id)
}

func (l *levelStore) SaveIdentity(ctx context.Context, id uplink.Identity) error {
	return l.putSecret(ctx, identitySecret, id)
}

func (l *levelStore) Desired(ctx context.Context) (*tunnel.Desired, error) {
	b, ok, err := l.secret(ctx, desiredSecret)
	if err != nil || !ok {
		return nil, err
	}
	var d tunnel.Desired
	return &d, json.Unmarshal(b, &d)
}

// SaveDesired keeps the set, makes its deployments this level's, and
// takes its revocations.
func (l *levelStore) SaveDesired(ctx context.Context, d *tunnel.Desired) error {
	if err := l.putSecret(ctx, desiredSecret, d); err != nil {
		return err
	}
	if err := l.inherit(ctx, d.Deployments); err != nil {
		return err
	}
	l.mu.Lock()
	ctl := l.ctl
	l.mu.Unlock()
	if ctl != nil && len(d.Revoked) > 0 {
		ctl.Revoke(ctx, d.Revoked)
	}
	return nil
}

// inherit applies the parent's deployments as ClusterDeployments here and
// deletes those the parent no longer sends. A ClusterDeployment of the
// same name made at this level is left alone, and the deployment with it.
func (l *levelStore) inherit(ctx context.Context, deps []tunnel.Deployment) error {
	l.mu.Lock()
	parent := l.parent
	l.mu.Unlock()
	if parent == "" {
		parent = "parent"
	}
	client := l.dyn.Resource(crds.ClusterDeployments)
	want := map[string]bool{}
	for _, d := range deps {
		want[d.Namespace+"/"+d.Name] = true
		old, err := client.Namespace(d.Namespace).Get(ctx, d.Name, metav1.GetOptions{})
		if err == nil {
			if _, ours := old.GetLabels()[controller.InheritedLabel]; !ours {
				l.log.Warn("a ClusterDeployment of this level has the name of one from the parent; the parent's is not applied here", "deployment", d.Namespace+"/"+d.Name)
				continue
			}
		} else if !apierrors.IsNotFound(err) {
			return err
		}
		if err := l.ensureNamespace(ctx, d.Namespace); err != nil {
			return err
		}
		manifests := make([]any, len(d.Manifests))
		for i, m := range d.Manifests {
			var v any
			if err := json.Unmarshal(m, &v); err != nil {
				return fmt.Errorf("deployment %s/%s: manifest %d: %w", d.Namespace, d.Name, i, err)
			}
			manifests[i] = v
		}
		targets := make([]any, len(d.Targets))
		for i, t := range d.Targets {
			targets[i] = t
		}
		obj := map[string]any{
			"apiVersion": crds.Group + "/" + crds.Version, "kind": "ClusterDeployment",
			"metadata": map[string]any{"name": d.Name, "namespace": d.Namespace, "labels": map[string]any{controller.InheritedLabel: parent}},
			"spec":     map[string]any{"clusterSelector": map[string]any{"names": targets}, "manifests": manifests},
		}
		data, err := json.Marshal(obj)
		if err != nil {
			return err
		}
		force := true
		if _, err := client.Namespace(d.Namespace).Patch(ctx, d.Name, types.ApplyPatchType, data,
			metav1.PatchOptions{FieldManager: inheritedManager, Force: &force}); err != nil {
			return fmt.Errorf("apply deployment %s/%s: %w", d.Namespace, d.Name, err)
		}
	}
	list, err := client.Namespace("").List(ctx, metav1.ListOptions{LabelSelector: controller.InheritedLabel})
	if err != nil {
		return err
	}
	for _, item := range list.Items {
		if !want[item.GetNamespace()+"/"+item.GetName()] {
			err := client.Namespace(item.GetNamespace()).Delete(ctx, item.GetName(), metav1.DeleteOptions{})
			if err != nil && !apierrors.IsNotFound(err) {
				return err
			}
		}
	}
	return nil
}

func (l *levelStore) ensureNamespace(ctx context.Context, ns string) error {
	_, err := l.cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("namespace %s: %w", ns, err)
	}
	return nil
}

// Report keeps the uplink's state in a ConfigMap.
func (l *levelStore) Report(ctx context.Context, r uplink.Report) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return l.tokens().ApplyConfigMap(ctx, statusMap, "ote-uplink", map[string]string{
		"phase": r.Phase, "cluster": r.Cluster, "parent": r.Parent, "server": r.Server, "lastError": r.LastError,
		"report.json": string(b),
	})
}

func (l *levelStore) welcomed(parent string) {
	l.mu.Lock()
	l.parent = parent
	l.mu.Unlock()
}

func (l *levelStore) setController(c *controller.Controller) {
	l.mu.Lock()
	l.ctl = c
	l.mu.Unlock()
}
