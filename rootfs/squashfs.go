package rootfs

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"

	"github.com/ote-edge/ote/rootfs/initrd"
)

// RootSpec is what goes into a root filesystem.
type RootSpec struct {
	// OTE is the ote binary for the board's arch.
	OTE string
	// Overlay, if set, is a directory whose files are copied over the
	// tree as they are.
	Overlay string
	// Release names the build in /etc/os-release.
	Release string
}

// StageRoot lays out the root filesystem in dir, which must be empty or
// missing.
func StageRoot(spec RootSpec, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, d := range []string{"usr/bin", "sbin", "etc/ote", "boot", "data", "dev", "proc", "sys", "run", "tmp", "var", "root"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	if err := os.Chmod(filepath.Join(dir, "tmp"), 0o1777); err != nil {
		return err
	}
	if err := copyFile(spec.OTE, filepath.Join(dir, initrd.OTE), 0o755); err != nil {
		return fmt.Errorf("rootfs: the ote binary: %w", err)
	}
	if err := os.Symlink("../usr/bin/ote", filepath.Join(dir, "sbin", "init")); err != nil {
		return err
	}
	release := fmt.Sprintf("NAME=OTE\nID=ote\nPRETTY_NAME=\"OTE %s\"\nVERSION_ID=%s\nHOME_URL=\"https://github.com/ote-edge/ote\"\n", spec.Release, strconv.Quote(spec.Release))
	if err := os.WriteFile(filepath.Join(dir, "etc", "os-release"), []byte(release), 0o644); err != nil {
		return err
	}
	if spec.Overlay != "" {
		if err := os.CopyFS(dir, os.DirFS(spec.Overlay)); err != nil {
			return fmt.Errorf("rootfs: overlay %s: %w", spec.Overlay, err)
		}
	}
	return nil
}

// Squashfs writes dir as a zstd squashfs image at out. Owners are root,
// and every time stamp is zero, so the same tree gives the same bytes;
// mksquashfs sorts directory entries itself.
func Squashfs(ctx context.Context, dir, out string) error {
	os.Remove(out)
	cmd := exec.CommandContext(ctx, "mksquashfs", dir, out, "-noappend", "-comp", "zstd", "-all-root",
		"-mkfs-time", "0", "-all-time", "0", "-no-xattrs", "-no-progress", "-quiet")
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = io.Discard, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("mksquashfs: %w: %s", err, bytes.TrimSpace(stderr.Bytes()))
	}
	return nil
}

func copyFile(from, to string, mode os.FileMode) error {
	data, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		return err
	}
	return os.WriteFile(to, data, mode)
}
