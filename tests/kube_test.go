package tests

import (
	"debug/elf"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const kubeVersion = "v1.36.3"

func TestKubeReportsUpstreamVersion(t *testing.T) {
	kube := builtBinary(t, "kube")
	r := runBinary(t, kube, "kubectl", "version", "--client")
	if r.code != 0 || !strings.Contains(r.stdout, "Client Version: "+kubeVersion) {
		t.Errorf("kube kubectl version --client = exit %d, %q %q; want Client Version: %s", r.code, r.stdout, r.stderr, kubeVersion)
	}
	r = runBinary(t, kube, "apiserver", "--version")
	if r.code != 0 || strings.TrimSpace(r.stdout) != "Kubernetes "+kubeVersion {
		t.Errorf("kube apiserver --version = exit %d, %q; want Kubernetes %s", r.code, r.stdout, kubeVersion)
	}
}

// Symlinks named like the upstream binaries select the component.
func TestKubeSymlinks(t *testing.T) {
	kube := builtBinary(t, "kube")
	dir := t.TempDir()
	for _, c := range []struct{ link, flag, want string }{
		{"kubectl", "version", "Client Version: " + kubeVersion},
		{"kube-apiserver", "--version", "Kubernetes " + kubeVersion},
		{"kube-controller-manager", "--version", "Kubernetes " + kubeVersion},
		{"kube-scheduler", "--version", "Kubernetes " + kubeVersion},
		{"kubelet", "--version", "Kubernetes " + kubeVersion},
	} {
		link := filepath.Join(dir, c.link)
		if err := os.Symlink(kube, link); err != nil {
			t.Fatal(err)
		}
		args := []string{c.flag}
		if c.link == "kubectl" {
			args = append(args, "--client")
		}
		r := runBinary(t, link, args...)
		if r.code != 0 || !strings.Contains(r.stdout, c.want) {
			t.Errorf("%s %v = exit %d, %q %q; want %q", c.link, args, r.code, r.stdout, r.stderr, c.want)
		}
	}
}

func TestKubeUsage(t *testing.T) {
	kube := builtBinary(t, "kube")
	for _, args := range [][]string{nil, {"no-such-component"}} {
		r := runBinary(t, kube, args...)
		if r.code != 2 || !strings.Contains(r.stderr, "usage: kube") {
			t.Errorf("kube %v = exit %d, stderr %q; want exit 2 and usage on stderr", args, r.code, r.stderr)
		}
	}
}

// Every kube that make cross or make kube produced is a static binary for
// its arch: the boxes have no libc to offer it.
func TestKubeBinariesMatchTheirArch(t *testing.T) {
	machines := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}
	out := filepath.Dir(outDir(t))
	found := 0
	for arch, want := range machines {
		p := filepath.Join(out, arch, "kube")
		f, err := elf.Open(p)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			t.Fatalf("open %s: %v", p, err)
		}
		found++
		if f.Machine != want {
			t.Errorf("%s is built for %v, want %v", p, f.Machine, want)
		}
		for _, prog := range f.Progs {
			if prog.Type == elf.PT_INTERP {
				t.Errorf("%s is dynamically linked; kube must build with CGO_ENABLED=0", p)
			}
		}
		f.Close()
	}
	if found == 0 {
		builtBinary(t, "kube") // skips in -short mode, fails otherwise
	}
}
