// Package initrd is the init of OTE's initramfs. It loads the boot
// modules, finds the active root slot and the data partition by their GPT
// partition names, mounts the slot's squashfs read-only under a tmpfs
// overlay, with the ext4 data partition at /data and the FAT boot
// partition at /boot, and switches root to `ote init`.
//
// The kernel command line chooses the slot: ote.slot=a (the default) or
// ote.slot=b.
package initrd

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ote-edge/ote/appliance/pid1"
)

// Partition names, as the image writes them into the GPT.
const (
	PartBoot  = "ote-boot"
	PartRootA = "ote-root-a"
	PartRootB = "ote-root-b"
	PartData  = "ote-data"
)

// ModulesList is the file in the initramfs that lists the boot modules to
// load, one path per line, in order.
const ModulesList = "etc/ote-initrd/modules"

// Config is what the init needs to know of its surroundings; tests point
// it at a fake tree.
type Config struct {
	Root   string // "/" in the initramfs
	Sys    string // /sys
	Dev    string // /dev
	Wait   time.Duration
	Logf   func(format string, args ...any)
	NewDir string // where the new root is assembled
}

// Slot returns the root slot the kernel command line asks for.
func Slot(cmdline string) (string, error) {
	slot := "a"
	for _, f := range strings.Fields(cmdline) {
		if v, ok := strings.CutPrefix(f, "ote.slot="); ok {
			slot = v
		}
	}
	if slot != "a" && slot != "b" {
		return "", fmt.Errorf("ote.slot=%s: want a or b", slot)
	}
	return slot, nil
}

// FindPartition returns the device node of the partition named name,
// from the uevent files under sys/class/block, waiting up to wait for it
// to appear (drivers probe disks in the background).
func FindPartition(sys, dev, name string, wait time.Duration) (string, error) {
	deadline := time.Now().Add(wait)
	for {
		entries, _ := os.ReadDir(filepath.Join(sys, "class", "block"))
		for _, e := range entries {
			f, err := os.Open(filepath.Join(sys, "class", "block", e.Name(), "uevent"))
			if err != nil {
				continue
			}
			var devname, partname string
			sc := bufio.NewScanner(f)
			for sc.Scan() {
				k, v, _ := strings.Cut(sc.Text(), "=")
				switch k {
				case "DEVNAME":
					devname = v
				case "PARTNAME":
					partname = v
				}
			}
			f.Close()
			if partname == name && devname != "" {
				return filepath.Join(dev, devname), nil
			}
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("no partition named %s after %v", name, wait)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Modules reads the list of boot modules, as paths below root.
func Modules(root string) ([]string, error) {
	mods, err := pid1.ReadModuleList(filepath.Join(root, ModulesList))
	for i, m := range mods {
		mods[i] = filepath.Join(root, m)
	}
	return mods, err
}

// Run does the init's work and, on success, does not return: it execs
// ote init in the new root.
func Run(cfg Config) error {
	start := time.Now()
	if err := pid1.MountEarly(); err != nil {
		return fmt.Errorf("mount /proc, /sys, /dev: %w", err)
	}
	mods, err := Modules(cfg.Root)
	if err != nil {
		return err
	}
	if err := pid1.LoadModules(mods); err != nil {
		cfg.Logf("modules: %v", err) // a module that fails may not be needed: go on
	}
	cmdline, _ := os.ReadFile("/proc/cmdline")
	slot, err := Slot(string(cmdline))
	if err != nil {
		return err
	}
	rootName := PartRootA
	if slot == "b" {
		rootName = PartRootB
	}
	rootDev, err := FindPartition(cfg.Sys, cfg.Dev, rootName, cfg.Wait)
	if err != nil {
		return err
	}
	dataDev, err := FindPartition(cfg.Sys, cfg.Dev, PartData, cfg.Wait)
	if err != nil {
		return err
	}
	// First boot on a disk bigger than the image: the data partition
	// takes the rest, before anything on the disk is mounted.
	if d, err := DiskOf(cfg.Sys, cfg.Dev, dataDev); err != nil {
		cfg.Logf("data partition: %v", err)
	} else if grown, err := GrowDisk(d); err != nil {
		cfg.Logf("grow the data partition: %v", err)
	} else if grown {
		cfg.Logf("data partition grown to the end of %s (%d MiB)", d.Dev, d.Size>>20)
		if rootDev, err = FindPartition(cfg.Sys, cfg.Dev, rootName, cfg.Wait); err != nil {
			return err
		}
		if dataDev, err = FindPartition(cfg.Sys, cfg.Dev, PartData, cfg.Wait); err != nil {
			return err
		}
	}
	lower, overlay, newRoot := "/run/ote/lower", "/run/ote/overlay", cfg.NewDir
	for _, d := range []string{lower, overlay, newRoot} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	if err := unix.Mount(rootDev, lower, "squashfs", unix.MS_RDONLY, ""); err != nil {
		return fmt.Errorf("mount root slot %s (%s): %w", slot, rootDev, err)
	}
	if err := unix.Mount("tmpfs", overlay, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755"); err != nil {
		return fmt.Errorf("mount overlay tmpfs: %w", err)
	}
	for _, d := range []string{"upper", "work"} {
		if err := os.Mkdir(filepath.Join(overlay, d), 0o755); err != nil {
			return err
		}
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s/upper,workdir=%s/work", lower, overlay, overlay)
	if err := unix.Mount("overlay", newRoot, "overlay", 0, opts); err != nil {
		return fmt.Errorf("mount overlay: %w", err)
	}
	data := filepath.Join(newRoot, "data")
	if err := os.MkdirAll(data, 0o755); err != nil {
		return err
	}
	if err := unix.Mount(dataDev, data, "ext4", unix.MS_NOATIME, ""); err != nil {
		return fmt.Errorf("mount data (%s): %w", dataDev, err)
	}
	if resized, err := ResizeExt4(dataDev, data); err != nil {
		cfg.Logf("resize the data filesystem: %v", err)
	} else if resized {
		cfg.Logf("data filesystem resized to fill its partition")
	}
	// The boot partition holds ote/config.yaml and ote/enroll.yaml. A box
	// without it still runs (with defaults, not enrolled) and says so.
	boot := filepath.Join(newRoot, "boot")
	if bootDev, err := FindPartition(cfg.Sys, cfg.Dev, PartBoot, cfg.Wait); err != nil {
		cfg.Logf("boot partition: %v", err)
	} else if err := os.MkdirAll(boot, 0o755); err != nil {
		return err
	} else if err := unix.Mount(bootDev, boot, "vfat", unix.MS_NOATIME|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "umask=0077"); err != nil {
		cfg.Logf("mount boot partition (%s): %v", bootDev, err)
	}
	cfg.Logf("root slot %s (%s), data %s, in %v", slot, rootDev, dataDev, time.Since(start).Round(time.Millisecond))
	return switchRoot(newRoot, OTE, "init")
}

// OTE is the ote binary in the root filesystem.
const OTE = "/usr/bin/ote"

// switchRoot moves the kernel filesystems into newRoot, makes it the root
// and execs bin with args there, as PID 1 still.
func switchRoot(newRoot, bin string, args ...string) error {
	for _, m := range []string{"/dev", "/proc", "/sys", "/run"} {
		target := filepath.Join(newRoot, m)
		if err := os.MkdirAll(target, 0o755); err != nil {
			return err
		}
		if err := unix.Mount(m, target, "", unix.MS_MOVE, ""); err != nil {
			return fmt.Errorf("move %s: %w", m, err)
		}
	}
	if err := unix.Chdir(newRoot); err != nil {
		return err
	}
	if err := unix.Mount(".", "/", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("move the new root to /: %w", err)
	}
	if err := unix.Chroot("."); err != nil {
		return err
	}
	if err := unix.Chdir("/"); err != nil {
		return err
	}
	return unix.Exec(bin, append([]string{filepath.Base(bin)}, args...), os.Environ())
}
