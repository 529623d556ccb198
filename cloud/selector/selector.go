// Package selector decides which clusters a ClusterDeployment targets.
// A selector matches a cluster that is named in names, or whose tags
// match every tag glob, or that its label selector selects; each part
// counts only when given. Tag globs are anchored patterns over "key=value"
// in path.Match syntax, e.g. site=berlin-* or tier=sh?p.
package selector

import (
	"fmt"
	"path"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// Spec is spec.clusterSelector of a ClusterDeployment.
type Spec struct {
	Names         []string              `json:"names,omitempty"`
	Tags          []string              `json:"tags,omitempty"`
	LabelSelector *metav1.LabelSelector `json:"labelSelector,omitempty"`
}

// Selector is a compiled Spec.
type Selector struct {
	names  []string
	tags   []string
	labels labels.Selector // nil when not given
}

// Compile checks spec and returns its Selector.
func Compile(spec Spec) (*Selector, error) {
	s := &Selector{names: spec.Names, tags: spec.Tags}
	for _, t := range spec.Tags {
		if !strings.Contains(t, "=") {
			return nil, fmt.Errorf("tag glob %q: want key=value", t)
		}
		if _, err := path.Match(t, ""); err != nil {
			return nil, fmt.Errorf("tag glob %q: %w", t, err)
		}
	}
	if spec.LabelSelector != nil {
		sel, err := metav1.LabelSelectorAsSelector(spec.LabelSelector)
		if err != nil {
			return nil, fmt.Errorf("label selector: %w", err)
		}
		s.labels = sel
	}
	return s, nil
}

// Matches reports whether the cluster with name and tags is targeted.
func (s *Selector) Matches(name string, tags map[string]string) bool {
	if slices.Contains(s.names, name) {
		return true
	}
	if len(s.tags) > 0 && s.tagsMatch(tags) {
		return true
	}
	return s.labels != nil && !s.labels.Empty() && s.labels.Matches(labels.Set(tags))
}

// tagsMatch: every glob matches some key=value of the cluster.
func (s *Selector) tagsMatch(tags map[string]string) bool {
	for _, glob := range s.tags {
		found := false
		for k, v := range tags {
			if ok, _ := path.Match(glob, k+"="+v); ok {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}
