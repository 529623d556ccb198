package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"

	"github.com/ote-edge/ote/cloud/crds"
	"github.com/ote-edge/ote/cloud/enrollment"
	"github.com/ote-edge/ote/cloud/tunnel"
)

// registry keeps the EdgeCluster objects of this level.
type registry struct {
	client dynamic.NamespaceableResourceInterface
}

func (r *registry) create(ctx context.Context, name string, tags map[string]string, notAfter time.Time) error {
	labels := map[string]any{}
	for k, v := range tags {
		labels[k] = v
	}
	obj := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": crds.Group + "/" + crds.Version,
		"kind":       "EdgeCluster",
		"metadata":   map[string]any{"name": name, "labels": labels},
		"spec":       map[string]any{},
	}}
	if _, err := r.client.Create(ctx, obj, metav1.CreateOptions{FieldManager: crds.FieldManager}); err != nil {
		return err
	}
	return r.setStatus(ctx, name, map[string]any{
		"phase": "Pending", "certificateNotAfter": notAfter.UTC().Format(time.RFC3339), "subtreeSize": 1,
	})
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

// list returns every registered cluster with its tags.
func (r *registry) list(ctx context.Context) (map[string]map[string]string, error) {
	l, err := r.client.List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	out := make(map[string]map[string]string, len(l.Items))
	for i := range l.Items {
		out[l.Items[i].GetName()] = l.Items[i].GetLabels()
	}
	return out, nil
}

// desiredMark is what the registry keeps of a cluster's desired set.
type desiredMark struct {
	tags     map[string]string
	revision int64
	hash     string
}

func (r *registry) desiredMark(ctx context.Context, name string) (desiredMark, error) {
	obj, err := r.client.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return desiredMark{}, err
	}
	rev, _, _ := unstructured.NestedInt64(obj.Object, "status", "desiredRevision")
	hash, _, _ := unstructured.NestedString(obj.Object, "status", "desiredHash")
	return desiredMark{tags: obj.GetLabels(), revision: rev, hash: hash}, nil
}

// tags returns a cluster's tags from the API server's cache: a consistent
// read would wait for the cache to catch up, which on kine takes about a
// second, and tags may lag a moment without harm.
func (r *registry) tags(ctx context.Context, name string) (map[string]string, error) {
	obj, err := r.client.Get(ctx, name, metav1.GetOptions{ResourceVersion: "0"})
	if err != nil {
		return nil, err
	}
	return obj.GetLabels(), nil
}
