package tests

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// repoRoot is the directory holding the root go.mod.
func repoRoot(t testing.TB) string {
	t.Helper()
	dir, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "go.mod")); err != nil {
		t.Fatalf("repository root not found above the tests folder: %v", err)
	}
	return dir
}

// outDir is where make put the host binaries.
func outDir(t testing.TB) string {
	t.Helper()
	if d := os.Getenv("OTE_OUT"); d != "" {
		return d
	}
	return filepath.Join(repoRoot(t), "out", runtime.GOARCH)
}

// builtBinary returns the path of a binary that make builds into out/,
// skipping in -short mode when it is absent and failing otherwise.
func builtBinary(t testing.TB, name string) string {
	t.Helper()
	p := filepath.Join(outDir(t), name)
	if _, err := os.Stat(p); err != nil {
		if testing.Short() {
			t.Skipf("%s not built (run make build kube): %v", name, err)
		}
		t.Fatalf("%s not built; make test builds it first: %v", name, err)
	}
	return p
}

// goPackage is the part of `go list -json` output the tests read.
type goPackage struct {
	ImportPath string
	Name       string
	Dir        string
	GoFiles    []string
	Deps       []string
}

// goList runs `go list -json` in the repository root.
func goList(t *testing.T, args ...string) []goPackage {
	t.Helper()
	cmd := exec.Command("go", append([]string{"list", "-json"}, args...)...)
	cmd.Dir = repoRoot(t)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list %v: %v\n%s", args, err, stderr.String())
	}
	var pkgs []goPackage
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p goPackage
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("decode go list output: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

// result is what a finished command printed and how it exited.
type result struct {
	stdout, stderr string
	code           int
}

func runBinary(t testing.TB, path string, args ...string) result {
	t.Helper()
	cmd := exec.Command(path, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("run %s %v: %v", path, args, err)
	}
	return result{stdout.String(), stderr.String(), cmd.ProcessState.ExitCode()}
}
