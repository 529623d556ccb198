// Package crds holds OTE's CustomResourceDefinitions (group ote.dev) and
// installs or updates them on a Kubernetes API server with server-side
// apply, then waits until they are served.
//
//   - EdgeCluster (cluster-scoped, short name ec): a cluster of the tree
//     below this level; its labels are its tags.
//   - ClusterDeployment (namespaced, short name cdep): objects to apply on
//     every cluster the selector matches, with rollout status.
package crds

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"
)

//go:embed *.yaml
var files embed.FS

// Group and Version of OTE's resources.
const (
	Group   = "ote.dev"
	Version = "v1alpha1"
)

// Resources of OTE's kinds.
var (
	EdgeClusters       = schema.GroupVersionResource{Group: Group, Version: Version, Resource: "edgeclusters"}
	ClusterDeployments = schema.GroupVersionResource{Group: Group, Version: Version, Resource: "clusterdeployments"}
)

var crdResource = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// FieldManager owns what OTE applies.
const FieldManager = "ote"

// All returns the CRDs as objects.
func All() ([]*unstructured.Unstructured, error) {
	names, err := fs.Glob(files, "*.yaml")
	if err != nil {
		return nil, err
	}
	var out []*unstructured.Unstructured
	for _, n := range names {
		b, err := files.ReadFile(n)
		if err != nil {
			return nil, err
		}
		var obj map[string]any
		if err := yaml.Unmarshal(b, &obj); err != nil {
			return nil, fmt.Errorf("%s: %w", n, err)
		}
		out = append(out, &unstructured.Unstructured{Object: obj})
	}
	return out, nil
}

// Install applies every CRD and waits until the API server serves them.
func Install(ctx context.Context, client dynamic.Interface) error {
	all, err := All()
	if err != nil {
		return err
	}
	force := true
	for _, crd := range all {
		data, err := crd.MarshalJSON()
		if err != nil {
			return err
		}
		_, err = client.Resource(crdResource).Patch(ctx, crd.GetName(), types.ApplyPatchType, data,
			metav1.PatchOptions{FieldManager: FieldManager, Force: &force})
		if err != nil {
			return fmt.Errorf("apply CRD %s: %w", crd.GetName(), err)
		}
	}
	for _, crd := range all {
		if err := waitEstablished(ctx, client, crd.GetName()); err != nil {
			return err
		}
	}
	return nil
}

func waitEstablished(ctx context.Context, client dynamic.Interface, name string) error {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		got, err := client.Resource(crdResource).Get(ctx, name, metav1.GetOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("get CRD %s: %w", name, err)
		}
		if err == nil {
			conds, _, _ := unstructured.NestedSlice(got.Object, "status", "conditions")
			for _, c := range conds {
				m, _ := c.(map[string]any)
				if m["type"] == "Established" && m["status"] == "True" {
					return nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("CRD %s not established: %w", name, ctx.Err())
		case <-t.C:
		}
	}
}
