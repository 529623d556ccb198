package rootfs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ote-edge/ote/board"
)

func TestLockRoundTripAndFind(t *testing.T) {
	l, err := PinnedLock()
	if err != nil {
		t.Fatal(err)
	}
	all, err := board.All()
	if err != nil {
		t.Fatal(err)
	}
	// Every package a board wants is pinned.
	for arch, names := range Wanted(all) {
		for _, n := range names {
			if _, err := l.Find(arch, n); err != nil {
				t.Errorf("%s/%s: %v", arch, n, err)
			}
		}
	}
	again, err := ParseLock("lock", l.Marshal())
	if err != nil || len(again.Entries) != len(l.Entries) || string(again.Marshal()) != string(l.Marshal()) {
		t.Errorf("the lock does not survive a round trip: %v", err)
	}
	if _, err := ParseLock("lock", []byte("amd64 linux-image-amd64 x 1\n")); err == nil || !strings.Contains(err.Error(), "lock:1") {
		t.Errorf("a short line: %v", err)
	}
	if _, err := l.Find("mips", "linux-image-amd64"); err == nil || !strings.Contains(err.Error(), "make lock") {
		t.Errorf("an unpinned package: %v", err)
	}
}

func TestSizes(t *testing.T) {
	b, err := board.Get("qemu-amd64")
	if err != nil {
		t.Fatal(err)
	}
	least := MinSize(b)
	if least != 706<<20 {
		t.Errorf("qemu-amd64 needs %d MiB, want 706", least>>20)
	}
	if d, err := DataSize(b, 0); err != nil || d != int64(b.Partitions.Data) {
		t.Errorf("default data size %d, %v", d, err)
	}
	if d, err := DataSize(b, least+(1<<30)); err != nil || d != int64(b.Partitions.Data)+(1<<30) {
		t.Errorf("a bigger image gives its room to data: %d, %v", d, err)
	}
	if _, err := DataSize(b, 100<<20); err == nil || !strings.Contains(err.Error(), "too small") {
		t.Errorf("100 MiB: %v", err)
	}
}

func TestCmdline(t *testing.T) {
	b, _ := board.Get("rpi4")
	if got := Cmdline(b, "b"); got != "console=tty0 console=ttyS1,115200 ote.slot=b panic=10" {
		t.Errorf("Cmdline = %q", got)
	}
}

func TestStageRootWithOverlay(t *testing.T) {
	dir := t.TempDir()
	ote := filepath.Join(dir, "ote")
	os.WriteFile(ote, []byte("binary"), 0o755)
	overlay := filepath.Join(dir, "overlay")
	os.MkdirAll(filepath.Join(overlay, "etc", "ote"), 0o755)
	os.WriteFile(filepath.Join(overlay, "etc", "ote", "modules"), []byte("wireguard\n"), 0o644)
	root := filepath.Join(dir, "root")
	if err := StageRoot(RootSpec{OTE: ote, Overlay: overlay, Release: "v1"}, root); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(root, "etc", "ote", "modules")); err != nil || string(b) != "wireguard\n" {
		t.Errorf("overlay file: %q, %v", b, err)
	}
	if target, err := os.Readlink(filepath.Join(root, "sbin", "init")); err != nil || target != "../usr/bin/ote" {
		t.Errorf("sbin/init -> %q, %v", target, err)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "etc", "os-release")); !strings.Contains(string(b), `VERSION_ID="v1"`) {
		t.Errorf("os-release: %s", b)
	}
}
