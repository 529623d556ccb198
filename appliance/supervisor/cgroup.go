package supervisor

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Cgroups places each service in a cgroup v2 of its own under one parent
// directory, with the service's memory and pid limits, and reads back
// their usage.
type Cgroups struct {
	dir string
}

// ErrNoCgroup2 is returned by OpenCgroups where cgroup v2 is not mounted.
var ErrNoCgroup2 = errors.New("cgroup v2 not available")

// OpenCgroups prepares dir, a cgroup v2 directory that holds no processes
// of its own (the root cgroup, or one made for the purpose), and enables
// the memory, pids and cpu controllers for its children where the kernel
// offers them.
func OpenCgroups(dir string) (*Cgroups, error) {
	avail, err := os.ReadFile(filepath.Join(dir, "cgroup.controllers"))
	if err != nil {
		return nil, fmt.Errorf("%w at %s: %v", ErrNoCgroup2, dir, err)
	}
	var enable []string
	for _, c := range strings.Fields(string(avail)) {
		switch c {
		case "memory", "pids", "cpu":
			enable = append(enable, "+"+c)
		}
	}
	if len(enable) > 0 {
		ctl := filepath.Join(dir, "cgroup.subtree_control")
		if err := os.WriteFile(ctl, []byte(strings.Join(enable, " ")), 0); err != nil {
			return nil, fmt.Errorf("enable %v in %s: %w", enable, ctl, err)
		}
	}
	return &Cgroups{dir: dir}, nil
}

// open creates (or reuses) the service's cgroup, writes its limits, and
// returns the directory opened for CLONE_INTO_CGROUP.
func (c *Cgroups) open(svc Service) (*os.File, error) {
	dir := filepath.Join(c.dir, svc.Name)
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("cgroup for %s: %w", svc.Name, err)
	}
	limits := map[string]int64{"memory.max": svc.MemoryMax, "pids.max": svc.PidsMax}
	for file, v := range limits {
		val := "max"
		if v > 0 {
			val = strconv.FormatInt(v, 10)
		}
		p := filepath.Join(dir, file)
		// Without the controller (a kernel or hierarchy that lacks it) the
		// file is absent, and the service runs without that limit. The
		// file is opened without O_CREATE: cgroupfs refuses to create one
		// with EACCES.
		if err := writeExisting(p, val); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("set %s=%s: %w", p, val, err)
		}
	}
	return os.Open(dir)
}

// usage reads a service's memory in bytes and CPU time in seconds; zeros
// when unknown.
func (c *Cgroups) usage(name string) (memory int64, cpuSeconds float64) {
	dir := filepath.Join(c.dir, name)
	if b, err := os.ReadFile(filepath.Join(dir, "memory.current")); err == nil {
		memory, _ = strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	}
	f, err := os.Open(filepath.Join(dir, "cpu.stat"))
	if err != nil {
		return memory, 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), " "); ok && k == "usage_usec" {
			usec, _ := strconv.ParseInt(v, 10, 64)
			cpuSeconds = float64(usec) / 1e6
		}
	}
	return memory, cpuSeconds
}

func writeExisting(path, val string) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(val); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
