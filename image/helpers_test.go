package image

import (
	"bytes"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const testEnroll = "server: 10.0.2.2:7443\ntoken: abc\nname: berlin-1\n"

// tool runs a real tool and returns its stdout; it fails t on an error.
func tool(t *testing.T, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}

// randomBytes returns n bytes that are the same on every run.
func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewChaCha8([32]byte{byte(seed)}))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// makeSquashfs makes a tiny root squashfs with mksquashfs in dir.
func makeSquashfs(t *testing.T, dir string) string {
	t.Helper()
	root := filepath.Join(dir, "rootfs")
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "etc", "os-release"), []byte("ID=ote\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "blob"), randomBytes(300<<10, 7), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "root.sqfs")
	tool(t, "mksquashfs", root, out, "-noappend", "-quiet", "-no-progress", "-all-root", "-processors", "1")
	return out
}

// testSpec is the small image the tests build: boot 40 MiB, root and data
// 8 MiB, written to dir/ote.img.
func testSpec(t *testing.T, dir, rootA string) Spec {
	t.Helper()
	return Spec{
		BootFiles: map[string][]byte{
			"EFI/BOOT/BOOTX64.EFI":    randomBytes(100<<10, 1),
			"loader/entries/ote.conf": []byte("title OTE\nlinux /vmlinuz\n"),
			"vmlinuz":                 randomBytes(200<<10, 2),
			"ote/enroll.yaml":         []byte(testEnroll),
		},
		BootSize: 40 * MiB,
		RootSize: 8 * MiB,
		DataSize: 8 * MiB,
		RootA:    rootA,
		Seed:     "test-build-1",
		Out:      filepath.Join(dir, "ote.img"),
	}
}

func readFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// section returns size bytes of the file name from off.
func section(t *testing.T, name string, off, size int64) []byte {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, size)
	if _, err := io.ReadFull(io.NewSectionReader(f, off, size), b); err != nil {
		t.Fatal(err)
	}
	return b
}

// dirNames lists the names in dir.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}
