package selector

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestMatches(t *testing.T) {
	berlin := map[string]string{"site": "berlin-1", "tier": "shop"}
	paris := map[string]string{"site": "paris-2", "tier": "shop"}
	tests := []struct {
		name string
		spec Spec
		box  string
		tags map[string]string
		want bool
	}{
		{"name", Spec{Names: []string{"box-1"}}, "box-1", nil, true},
		{"other name", Spec{Names: []string{"box-1"}}, "box-2", berlin, false},
		{"glob", Spec{Tags: []string{"site=berlin-*"}}, "b", berlin, true},
		{"glob is anchored", Spec{Tags: []string{"site=berlin"}}, "b", berlin, false},
		{"glob other site", Spec{Tags: []string{"site=berlin-*"}}, "p", paris, false},
		{"all globs must match", Spec{Tags: []string{"site=*", "tier=factory"}}, "b", berlin, false},
		{"two globs", Spec{Tags: []string{"site=*-1", "tier=sh?p"}}, "b", berlin, true},
		{"glob on key", Spec{Tags: []string{"ti*=shop"}}, "p", paris, true},
		{"no tags", Spec{Tags: []string{"site=*"}}, "x", nil, false},
		{"label selector", Spec{LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"tier": "shop"}}}, "p", paris, true},
		{"label expression", Spec{LabelSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "site", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"paris-2"}}}}}, "p", paris, false},
		{"empty label selector matches nothing", Spec{LabelSelector: &metav1.LabelSelector{}}, "p", paris, false},
		{"names or tags", Spec{Names: []string{"x"}, Tags: []string{"site=paris-*"}}, "p", paris, true},
	}
	for _, tt := range tests {
		s, err := Compile(tt.spec)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if got := s.Matches(tt.box, tt.tags); got != tt.want {
			t.Errorf("%s: Matches(%s, %v) = %v, want %v", tt.name, tt.box, tt.tags, got, tt.want)
		}
	}
}

func TestCompileRejects(t *testing.T) {
	for _, spec := range []Spec{
		{Tags: []string{"no-equals"}},
		{Tags: []string{"site=[berlin"}},
		{LabelSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "a", Operator: "Sometimes"}}}},
	} {
		if _, err := Compile(spec); err == nil {
			t.Errorf("Compile(%+v) accepted", spec)
		}
	}
}
