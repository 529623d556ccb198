package initrd

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestSlot(t *testing.T) {
	for cmdline, want := range map[string]string{
		"console=ttyS0 panic=10":           "a",
		"console=ttyS0 ote.slot=b panic=5": "b",
		"ote.slot=b ote.slot=a":            "a",
	} {
		if got, err := Slot(cmdline); err != nil || got != want {
			t.Errorf("Slot(%q) = %q, %v; want %q", cmdline, got, err, want)
		}
	}
	if _, err := Slot("ote.slot=c"); err == nil {
		t.Error("ote.slot=c was accepted")
	}
}

func TestFindPartitionByName(t *testing.T) {
	sys := t.TempDir()
	write := func(dev, uevent string) {
		dir := filepath.Join(sys, "class", "block", dev)
		os.MkdirAll(dir, 0o755)
		os.WriteFile(filepath.Join(dir, "uevent"), []byte(uevent), 0o644)
	}
	write("vda", "MAJOR=254\nMINOR=0\nDEVNAME=vda\nDEVTYPE=disk\n")
	write("vda2", "MAJOR=254\nMINOR=2\nDEVNAME=vda2\nDEVTYPE=partition\nPARTN=2\nPARTNAME=ote-root-a\n")
	got, err := FindPartition(sys, "/dev", PartRootA, time.Second)
	if err != nil || got != "/dev/vda2" {
		t.Errorf("FindPartition = %q, %v; want /dev/vda2", got, err)
	}
	// A partition that shows up late is waited for.
	go func() {
		time.Sleep(100 * time.Millisecond)
		write("vda4", "DEVNAME=vda4\nPARTNAME=ote-data\n")
	}()
	if got, err := FindPartition(sys, "/dev", PartData, 5*time.Second); err != nil || got != "/dev/vda4" {
		t.Errorf("late FindPartition = %q, %v", got, err)
	}
	if _, err := FindPartition(sys, "/dev", PartRootB, 50*time.Millisecond); err == nil {
		t.Error("a missing partition was found")
	}
}

func TestModulesList(t *testing.T) {
	root := t.TempDir()
	if mods, err := Modules(root); err != nil || mods != nil {
		t.Errorf("no list: %v, %v", mods, err)
	}
	os.MkdirAll(filepath.Join(root, "etc", "ote-initrd"), 0o755)
	os.WriteFile(filepath.Join(root, ModulesList), []byte("# boot modules\nlib/modules/6.1/a.ko\n\nlib/modules/6.1/b.ko\n"), 0o644)
	mods, err := Modules(root)
	if err != nil || len(mods) != 2 || mods[1] != filepath.Join(root, "lib/modules/6.1/b.ko") {
		t.Errorf("Modules = %v, %v", mods, err)
	}
}
