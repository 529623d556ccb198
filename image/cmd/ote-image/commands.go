package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/ote-edge/ote/board"
	"github.com/ote-edge/ote/cross/buildinfo"
	"github.com/ote-edge/ote/cross/multicall"
	"github.com/ote-edge/ote/image"
	"github.com/ote-edge/ote/rootfs"
)

// siblingBinary is name built for arch next to this binary's folder:
// out/amd64/ote-image finds out/arm64/ote.
func siblingBinary(arch, name string) string {
	exe, err := os.Executable()
	if err != nil {
		return name
	}
	return filepath.Join(filepath.Dir(filepath.Dir(exe)), arch, name)
}

func defaultCache() string {
	exe, err := os.Executable()
	if err != nil {
		return "ote-image-cache"
	}
	return filepath.Join(filepath.Dir(filepath.Dir(exe)), "cache")
}

// build is `ote-image build`.
func build(ctx context.Context, args []string) error {
	fs := multicall.FlagSet("build", os.Stderr)
	name := fs.String("board", "", "the `BOARD` (see ote-image boards)")
	out := fs.String("out", "", "the image `FILE` to write; FILE.zst and FILE.bmap are written next to it")
	enroll := fs.String("enroll", "", "an enroll.yaml `FILE` for the boot partition")
	config := fs.String("config", "", "a config.yaml `FILE` for the boot partition")
	ote := fs.String("ote", "", "the ote binary for the board's arch (default: ../ARCH/ote next to ote-image)")
	initrd := fs.String("initrd", "", "the ote-initrd binary for the board's arch (default: ../ARCH/ote-initrd next to ote-image)")
	cache := fs.String("cache", defaultCache(), "`DIR` for downloaded and unpacked packages")
	overlay := fs.String("overlay", "", "a `DIR` whose files are copied into the root filesystem as they are")
	var size board.Size
	fs.Var(&size, "size", "the image's `SIZE` (e.g. 4Gi); the data partition takes what the other partitions leave (default: the least)")
	if err := multicall.Parse(fs, args, 0); err != nil {
		return err
	}
	if *name == "" || *out == "" {
		return fmt.Errorf("%w: --board and --out are required", multicall.ErrUsage)
	}
	b, err := board.Get(*name)
	if err != nil {
		return err
	}
	o := rootfs.Options{Board: b, OTE: *ote, Init: *initrd, Cache: *cache, Overlay: *overlay, Size: int64(size), Release: buildinfo.Version(), Out: *out, Progress: os.Stderr}
	if o.OTE == "" {
		o.OTE = siblingBinary(b.Arch, "ote")
	}
	if o.Init == "" {
		o.Init = siblingBinary(b.Arch, "ote-initrd")
	}
	for _, f := range []struct {
		path string
		dst  *[]byte
	}{{*enroll, &o.Enroll}, {*config, &o.Config}} {
		if f.path == "" {
			continue
		}
		if *f.dst, err = os.ReadFile(f.path); err != nil {
			return err
		}
	}
	if err := rootfs.CheckBootFiles(o.Config, o.Enroll); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(*out), 0o755); err != nil {
		return err
	}
	return rootfs.Image(ctx, o)
}

// enroll is `ote-image enroll IMAGE ENROLL.yaml`.
func enroll(ctx context.Context, args []string) error {
	fs := multicall.FlagSet("enroll", os.Stderr)
	if err := multicall.Parse(fs, args, 2); err != nil {
		return err
	}
	if fs.NArg() != 2 {
		return fmt.Errorf("%w: want IMAGE ENROLL.yaml", multicall.ErrUsage)
	}
	data, err := os.ReadFile(fs.Arg(1))
	if err != nil {
		return err
	}
	return image.Enroll(ctx, fs.Arg(0), data)
}

// lock is `ote-image lock`: pins every board's packages at the versions
// the mirror offers now.
func lock(ctx context.Context, args []string) error {
	fs := multicall.FlagSet("lock", os.Stderr)
	out := fs.String("out", "rootfs/packages.lock", "the lock `FILE` to write")
	cache := fs.String("cache", defaultCache(), "`DIR` for the APT roots")
	if err := multicall.Parse(fs, args, 0); err != nil {
		return err
	}
	all, err := board.All()
	if err != nil {
		return err
	}
	l, err := rootfs.Resolve(ctx, *cache, all, os.Stderr)
	if err != nil {
		return err
	}
	if len(l.Entries) == 0 {
		return errors.New("lock: nothing resolved")
	}
	tmp := *out + ".tmp"
	if err := os.WriteFile(tmp, l.Marshal(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, *out)
}

// qemu is `ote-image qemu [--firmware] [--status ADDR] IMAGE BOARD`: boots
// the image of a virtual board under QEMU (TCG), its serial console on
// this terminal, the status page forwarded to ADDR.
func qemu(ctx context.Context, args []string) error {
	fs := multicall.FlagSet("qemu", os.Stderr)
	status := fs.String("status", "127.0.0.1:8080", "host `ADDR` the box's status page (port 80) is forwarded to")
	firmware := fs.Bool("firmware", false, "boot through the board's UEFI firmware and the image's bootloader, not the kernel directly")
	if err := multicall.Parse(fs, args, 2); err != nil {
		return err
	}
	if fs.NArg() != 2 {
		return fmt.Errorf("%w: want IMAGE BOARD", multicall.ErrUsage)
	}
	img := fs.Arg(0)
	b, err := board.Get(fs.Arg(1))
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "ote-qemu-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	o := board.QEMUOptions{Image: img, Forward: []string{"tcp:" + *status + "-:80"}}
	if *firmware {
		if b.QEMU == nil {
			return fmt.Errorf("%s is not a virtual board", b.Name)
		}
		o.Vars = filepath.Join(work, "vars.fd")
		if err := copyFile(b.QEMU.VarsTemplate(), o.Vars); err != nil {
			return err
		}
	} else {
		o.Kernel, o.Initrd = filepath.Join(work, "vmlinuz"), filepath.Join(work, "initrd.img")
		if err := image.ExtractBootFile(ctx, img, "vmlinuz", o.Kernel); err != nil {
			return err
		}
		if err := image.ExtractBootFile(ctx, img, "initrd.img", o.Initrd); err != nil {
			return err
		}
		o.Cmdline = rootfs.Cmdline(b, "a")
	}
	argv, err := b.QEMUArgs(o)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "ote-image: %s\note-image: status page on http://%s/ once the box is up; quit with Ctrl-C\n", strings.Join(argv, " "), *status)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	return cmd.Run()
}

func copyFile(from, to string) error {
	data, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, data, 0o644)
}
