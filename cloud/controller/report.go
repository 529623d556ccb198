package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/ote-edge/ote/cloud/enrollment"
	"github.com/ote-edge/ote/cloud/tunnel"
)

// Report is what this level tells its parent about its subtree: every
// cluster it knows below it, the state of the deployments it got from the
// parent on each of their targets, and its revocations. It comes with a
// channel closed at the next change.
func (c *Controller) Report() (*tunnel.Status, <-chan struct{}) {
	c.mu.Lock()
	changed := c.reportCh
	c.mu.Unlock()
	st := &tunnel.Status{Revoked: c.revokedCopy()}
	c.registry.each(func(name string, e *ecEntry) {
		if e.phase == "Revoked" {
			return
		}
		cs := tunnel.ClusterStatus{
			Name: name, Tags: e.labels, Parent: e.parent, Phase: e.phase,
			LastSeen: e.lastSeen, AgentVersion: e.agentVersion, CertNotAfter: e.notAfter,
		}
		if cs.Parent == "" {
			cs.Parent = c.cfg.Name
		}
		if cs.Phase == "" {
			cs.Phase = "Pending"
		}
		st.Clusters = append(st.Clusters, cs)
	})
	c.mu.Lock()
	for i := range st.Clusters {
		cs := &st.Clusters[i]
		if s := c.children[cs.Name]; s != nil {
			cs.CertNotBefore = s.cert.NotBefore
		} else if _, cl, ok := c.ownerLocked(cs.Name); ok {
			cs.CertNotBefore = cl.st.CertNotBefore
		}
	}
	c.mu.Unlock()
	slices.SortFunc(st.Clusters, func(a, b tunnel.ClusterStatus) int { return strings.Compare(a.Name, b.Name) })
	st.Deployments = c.sync.inheritedStates(c.cfg.Name)
	return st, changed
}

// Revocations are kept in a ConfigMap of this level, so that they outlive
// the EdgeClusters whose deletion made them.
const revokedConfigMap = "ote-revoked"

var configMaps = schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}

func (c *Controller) loadRevoked(ctx context.Context) error {
	obj, err := c.cfg.Dynamic.Resource(configMaps).Namespace(enrollment.Namespace).Get(ctx, revokedConfigMap, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	raw, _, _ := unstructured.NestedString(obj.Object, "data", "revoked")
	m := map[string]time.Time{}
	if raw != "" {
		if err := json.Unmarshal([]byte(raw), &m); err != nil {
			return fmt.Errorf("%s/%s: %w", enrollment.Namespace, revokedConfigMap, err)
		}
	}
	c.mu.Lock()
	for n, at := range m {
		if old, ok := c.revoked[n]; !ok || at.After(old) {
			c.revoked[n] = at
		}
	}
	c.mu.Unlock()
	return nil
}

func (c *Controller) saveRevoked(ctx context.Context) error {
	b, err := json.Marshal(c.revokedCopy())
	if err != nil {
		return err
	}
	obj := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "ConfigMap",
		"metadata": map[string]any{"name": revokedConfigMap, "namespace": enrollment.Namespace},
		"data":     map[string]any{"revoked": string(b)},
	}}
	data, err := json.Marshal(obj.Object)
	if err != nil {
		return err
	}
	force := true
	_, err = c.cfg.Dynamic.Resource(configMaps).Namespace(enrollment.Namespace).Patch(ctx, revokedConfigMap, "application/apply-patch+yaml", data,
		metav1.PatchOptions{FieldManager: "ote-controller", Force: &force})
	return err
}
