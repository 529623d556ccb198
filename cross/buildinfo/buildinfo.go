// Package buildinfo reports the version and git commit that the build rules
// in cross/ stamp into every OTE binary with -ldflags -X. Unstamped builds
// (go run, go test) report "dev" and "unknown".
package buildinfo

import "fmt"

// Stamped by the linker; see cross/cross.mk. They are set once, at link
// time, and never written at run time.
var (
	version = "dev"
	commit  = "unknown"
)

// Version is the release version, e.g. v0.1.0 or a git describe string.
func Version() string { return version }

// Commit is the full git commit hash the binary was built from.
func Commit() string { return commit }

// String formats the build information for a program's version command.
func String(program string) string {
	return fmt.Sprintf("%s %s (commit %s)", program, version, commit)
}
