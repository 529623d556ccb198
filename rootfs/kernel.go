package rootfs

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Kernel is a kernel package unpacked: its image, version, module tree
// and device trees.
type Kernel struct {
	Dir     string // where the package is unpacked
	Version string // e.g. 6.1.0-41-cloud-amd64
	Image   string // the kernel image (vmlinuz)
}

// ModulesDir is the kernel's module tree.
func (k Kernel) ModulesDir() string { return filepath.Join(k.Dir, "lib", "modules", k.Version) }

// DTBDir is where the package keeps its device trees.
func (k Kernel) DTBDir() string {
	return filepath.Join(k.Dir, "usr", "lib", "linux-image-"+k.Version)
}

// Unpack extracts a .deb into dir with dpkg-deb (which runs none of the
// package's scripts).
func Unpack(ctx context.Context, deb, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	out, err := exec.CommandContext(ctx, "dpkg-deb", "-x", deb, dir).CombinedOutput()
	if err != nil {
		return fmt.Errorf("dpkg-deb -x %s: %w: %s", filepath.Base(deb), err, bytes.TrimSpace(out))
	}
	return nil
}

// unpackOnce unpacks a package into dir unless an earlier build finished
// doing so; what a build left half done is unpacked again.
func unpackOnce(ctx context.Context, deb, dir string) error {
	mark := filepath.Join(dir, ".unpacked")
	if _, err := os.Stat(mark); err == nil {
		return nil
	}
	os.RemoveAll(dir)
	if err := Unpack(ctx, deb, dir); err != nil {
		return err
	}
	return os.WriteFile(mark, nil, 0o644)
}

// OpenKernel unpacks a kernel package (once) and runs depmod over its
// modules: Debian's packages ship no modules.dep.
func OpenKernel(ctx context.Context, deb, dir string) (Kernel, error) {
	k := Kernel{Dir: dir}
	if err := unpackOnce(ctx, deb, dir); err != nil {
		return k, err
	}
	versions, err := os.ReadDir(filepath.Join(dir, "lib", "modules"))
	if err != nil || len(versions) != 1 {
		return k, fmt.Errorf("rootfs: %s holds %d module trees, want one kernel", filepath.Base(deb), len(versions))
	}
	k.Version = versions[0].Name()
	k.Image = filepath.Join(dir, "boot", "vmlinuz-"+k.Version)
	if _, err := os.Stat(k.Image); err != nil {
		return k, fmt.Errorf("rootfs: %s has no kernel image: %w", filepath.Base(deb), err)
	}
	if _, err := os.Stat(filepath.Join(k.ModulesDir(), "modules.dep")); err != nil {
		if out, err := exec.CommandContext(ctx, "depmod", "-b", dir, k.Version).CombinedOutput(); err != nil {
			return k, fmt.Errorf("depmod %s: %w: %s", k.Version, err, bytes.TrimSpace(out))
		}
	}
	return k, nil
}

// ModuleChain returns the module files (relative to the module tree) that
// loading the named modules takes, each after those it depends on, once.
// Modules built into the kernel need no file and are left out; a name the
// kernel has neither as a module nor built in is an error.
func (k Kernel) ModuleChain(ctx context.Context, names []string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	for _, name := range names {
		cmd := exec.CommandContext(ctx, "modprobe", "-d", k.Dir, "-S", k.Version, "--show-depends", name)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		stdout, err := cmd.Output()
		if err != nil {
			return nil, fmt.Errorf("rootfs: kernel %s has no module %q: %s", k.Version, name, strings.TrimSpace(stderr.String()))
		}
		sc := bufio.NewScanner(bytes.NewReader(stdout))
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) < 2 || f[0] != "insmod" {
				continue // "builtin NAME"
			}
			rel, err := filepath.Rel(k.ModulesDir(), f[1])
			if err != nil || strings.HasPrefix(rel, "..") {
				return nil, fmt.Errorf("rootfs: module %s outside the tree: %s", name, f[1])
			}
			if !seen[rel] {
				seen[rel] = true
				out = append(out, rel)
			}
		}
	}
	return out, nil
}
