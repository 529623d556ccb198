package supervisor

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// A directory laid out like a cgroup v2 hierarchy: the files cgroupfs
// would offer, and none of the controller files it would not.
func TestCgroups(t *testing.T) {
	root := t.TempDir()
	if _, err := OpenCgroups(root); !errors.Is(err, ErrNoCgroup2) {
		t.Fatalf("OpenCgroups without cgroup.controllers = %v, want ErrNoCgroup2", err)
	}
	write := func(p, s string) {
		t.Helper()
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(root, "cgroup.controllers"), "cpuset cpu io memory pids\n")
	write(filepath.Join(root, "cgroup.subtree_control"), "")
	cg, err := OpenCgroups(root)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "cgroup.subtree_control")); string(b) != "+cpu +memory +pids" {
		t.Errorf("subtree_control = %q, want +cpu +memory +pids", b)
	}

	// Only memory.max exists: the memory limit is written, the pids limit
	// (no controller) skipped.
	dir := filepath.Join(root, "svc")
	os.Mkdir(dir, 0o755)
	write(filepath.Join(dir, "memory.max"), "max")
	f, err := cg.open(Service{Name: "svc", MemoryMax: 64 << 20, PidsMax: 10})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	f.Close()
	if b, _ := os.ReadFile(filepath.Join(dir, "memory.max")); string(b) != "67108864" {
		t.Errorf("memory.max = %q", b)
	}
	if _, err := os.Stat(filepath.Join(dir, "pids.max")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pids.max was created: %v", err)
	}

	write(filepath.Join(dir, "memory.current"), "1048576\n")
	write(filepath.Join(dir, "cpu.stat"), "usage_usec 2500000\nuser_usec 2000000\n")
	if mem, cpu := cg.usage("svc"); mem != 1<<20 || cpu != 2.5 {
		t.Errorf("usage = %d bytes, %v s; want 1 MiB, 2.5 s", mem, cpu)
	}
}
