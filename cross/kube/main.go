// Command kube carries the upstream Kubernetes components OTE runs in one
// multi-call binary built from k8s.io/kubernetes:
//
//	kube apiserver|controller-manager|scheduler|kubelet|kubectl [args...]
//
// It also dispatches on the base name it was invoked by, so symlinks named
// kube-apiserver, kube-controller-manager, kube-scheduler, kubelet and
// kubectl behave like the upstream binaries. One binary instead of five
// saves about two thirds of the space on a box, since the components share
// most of their code.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// component runs one upstream command with os.Args already rewritten to
// look like the upstream binary's own, and returns its exit code.
type component func() int

// components maps both the short subcommand names and the upstream binary
// names to their entry points.
func components() map[string]component {
	return map[string]component{
		"apiserver":          runAPIServer,
		"controller-manager": runControllerManager,
		"scheduler":          runScheduler,
		"kubelet":            runKubelet,
		"kubectl":            runKubectl,
	}
}

// aliases are the upstream binary names, used when kube is started through
// a symlink.
var aliases = map[string]string{
	"kube-apiserver":          "apiserver",
	"kube-controller-manager": "controller-manager",
	"kube-scheduler":          "scheduler",
}

func main() {
	os.Exit(dispatch(os.Args))
}

// dispatch picks the component from argv[0]'s base name or, for the kube
// name itself, from the first argument. It rewrites os.Args so that the
// component sees the argv its upstream binary would have seen: cobra and
// kubectl's plugin lookup read os.Args directly.
func dispatch(argv []string) int {
	table := components()
	name := filepath.Base(argv[0])
	if a, ok := aliases[name]; ok {
		name = a
	}
	if run, ok := table[name]; ok {
		return run()
	}
	if len(argv) < 2 {
		usage(table)
		return 2
	}
	sub := argv[1]
	if a, ok := aliases[sub]; ok {
		sub = a
	}
	run, ok := table[sub]
	if !ok {
		if sub == "help" || sub == "-h" || sub == "--help" {
			usage(table)
			return 0
		}
		fmt.Fprintf(os.Stderr, "kube: unknown component %q\n", argv[1])
		usage(table)
		return 2
	}
	os.Args = append([]string{upstreamName(sub)}, argv[2:]...)
	return run()
}

// upstreamName is the binary name the component's help text expects.
func upstreamName(sub string) string {
	for long, short := range aliases {
		if short == sub {
			return long
		}
	}
	return sub
}

func usage(table map[string]component) {
	names := make([]string, 0, len(table))
	for n := range table {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Fprintf(os.Stderr, "usage: kube <%s> [args...]\n", strings.Join(names, "|"))
	fmt.Fprintln(os.Stderr, "       or invoke through a symlink named like the upstream binary (kube-apiserver, kubectl, ...)")
}
