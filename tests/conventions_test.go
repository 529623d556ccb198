package tests

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// Every package says what it is for in exactly one place: a second package
// comment drifts from the first, and a missing one leaves readers to guess.
func TestEveryPackageHasOneDoc(t *testing.T) {
	for _, p := range goList(t, "./...") {
		var withDoc []string
		fset := token.NewFileSet()
		for _, f := range p.GoFiles {
			file, err := parser.ParseFile(fset, filepath.Join(p.Dir, f), nil, parser.PackageClauseOnly|parser.ParseComments)
			if err != nil {
				t.Fatalf("parse %s/%s: %v", p.ImportPath, f, err)
			}
			if file.Doc != nil {
				withDoc = append(withDoc, f)
			}
		}
		switch len(withDoc) {
		case 0:
			t.Errorf("package %s has no package doc comment; every package documents its purpose", p.ImportPath)
		case 1:
		default:
			t.Errorf("package %s has package doc comments in %d files %v; keep exactly one so they cannot disagree", p.ImportPath, len(withDoc), withDoc)
		}
	}
}

// Grab-bag packages collect code with no owner; name a package for what it does.
func TestNoGrabBagPackages(t *testing.T) {
	banned := map[string]bool{"util": true, "utils": true, "common": true, "helpers": true, "misc": true}
	for _, p := range goList(t, "./...") {
		if banned[p.Name] || banned[filepath.Base(p.Dir)] {
			t.Errorf("package %s is named %q; grab-bag packages are not allowed, name it for what it does", p.ImportPath, p.Name)
		}
	}
}

// What each binary must not link, and why.
func TestBinaryDependencies(t *testing.T) {
	rules := []struct {
		pkg, forbidden, why string
	}{
		{"./appliance/cmd/ote", "k8s.io/kubernetes", "the box binary must stay small; upstream Kubernetes runs as the separate kube binary"},
		{"./image/cmd/ote-image", "k8s.io/client-go", "the image builder works offline on files and never talks to a cluster"},
	}
	for _, r := range rules {
		pkgs := goList(t, r.pkg)
		if len(pkgs) != 1 || len(pkgs[0].Deps) == 0 {
			t.Fatalf("go list %s: got %d packages, want 1 with its dependencies", r.pkg, len(pkgs))
		}
		for _, d := range pkgs[0].Deps {
			if d == r.forbidden || strings.HasPrefix(d, r.forbidden+"/") {
				t.Errorf("%s links %s: %s", pkgs[0].ImportPath, d, r.why)
			}
		}
	}
}

// The Containerfile's build stage must build with the Go the module asks
// for and install its Debian packages from the same list as `make deps`.
func TestContainerfileMatchesBuild(t *testing.T) {
	root := repoRoot(t)
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(root, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	gomod, cf := read("go.mod"), read("Containerfile")

	m := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindStringSubmatch(gomod)
	if m == nil {
		t.Fatal("go.mod has no go directive")
	}
	goFrom := regexp.MustCompile(`(?m)^FROM \S*golang:(\d+\.\d+)\S* AS build$`).FindStringSubmatch(cf)
	if goFrom == nil {
		t.Fatal("Containerfile has no 'FROM ...golang:X.Y... AS build' stage")
	}
	if goFrom[1] != m[1] {
		t.Errorf("Containerfile builds with Go %s, go.mod wants Go %s", goFrom[1], m[1])
	}
	for _, want := range []string{"cross/debian-packages.txt", "cross/deps.sh", "make cross"} {
		if !strings.Contains(cf, want) {
			t.Errorf("Containerfile does not use %s; the image must build the way make does", want)
		}
	}
}
