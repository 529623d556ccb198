package rootfs

import (
	"context"
	_ "embed"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/ote-edge/ote/board"
	"github.com/ote-edge/ote/image"
	"github.com/ote-edge/ote/rootfs/apt"
)

//go:embed packages.lock
var lockFile []byte

// PinnedLock is the lock this build carries.
func PinnedLock() (Lock, error) { return ParseLock("rootfs/packages.lock", lockFile) }

// Options are the inputs of one image.
type Options struct {
	Board board.Board
	// OTE and Init are the ote and ote-initrd binaries for the board's arch.
	OTE, Init string
	// Config and Enroll go to ote/ on the boot partition; nil leaves
	// either out.
	Config, Enroll []byte
	// Cache keeps the APT roots, downloads and unpacked packages.
	Cache string
	// Overlay, if set, is copied over the root filesystem.
	Overlay string
	// Size is the whole image's size; zero is the least the board's
	// partitions need, and more goes to the data partition.
	Size int64
	// Release names the build (ote version).
	Release  string
	Out      string
	Progress io.Writer
}

// Image builds a board's image: pinned packages, kernel and boot modules,
// initramfs, root filesystem, boot partition, and the disk image with its
// .zst and .bmap.
func Image(ctx context.Context, o Options) error {
	b := o.Board
	if o.Overlay != "" {
		if st, err := os.Stat(o.Overlay); err != nil || !st.IsDir() {
			return fmt.Errorf("overlay %s: not a directory", o.Overlay)
		}
	}
	step := func(format string, args ...any) {
		if o.Progress != nil {
			fmt.Fprintf(o.Progress, "%s: "+format+"\n", append([]any{b.Name}, args...)...)
		}
	}
	dataSize, err := DataSize(b, o.Size)
	if err != nil {
		return err
	}
	lock, err := PinnedLock()
	if err != nil {
		return err
	}
	var pins []apt.Package
	var names []string
	for _, want := range b.Packages() {
		p, err := lock.Find(b.Arch, want)
		if err != nil {
			return err
		}
		pins, names = append(pins, p), append(names, want)
	}
	root := &apt.Root{Dir: aptRoot(o.Cache, b.Arch), Arch: b.Arch, Progress: o.Progress}
	if _, err := os.Stat(filepath.Join(root.Dir, "var/lib/apt/lists/lock")); err != nil {
		step("fetching the %s package lists", b.Arch)
		if err := root.Update(ctx); err != nil {
			return err
		}
	}
	step("packages %v", pins)
	debs, err := root.Download(ctx, pins)
	if err != nil {
		return err
	}
	unpacked := func(i int) string {
		return filepath.Join(o.Cache, "unpacked", fmt.Sprintf("%s_%s_%s", pins[i].Name, pins[i].Version, pins[i].Arch))
	}
	k, err := OpenKernel(ctx, debs[0], unpacked(0))
	if err != nil {
		return err
	}
	in := BootInputs{Board: b, Kernel: k, Config: o.Config, Enroll: o.Enroll}
	for i := 1; i < len(pins); i++ {
		dir := unpacked(i)
		if err := unpackOnce(ctx, debs[i], dir); err != nil {
			return err
		}
		switch names[i] {
		case b.Boot.Bootloader:
			in.Loader = dir
		case b.Boot.Firmware:
			in.Firmware = dir
		}
	}
	step("initramfs for kernel %s with %d boot modules", k.Version, len(b.Modules.List))
	if in.Initramfs, err = Initramfs(ctx, k, b.Modules.List, o.Init); err != nil {
		return err
	}
	work, err := os.MkdirTemp(filepath.Dir(o.Out), ".ote-image-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	step("root filesystem")
	stage := filepath.Join(work, "root")
	if err := StageRoot(RootSpec{OTE: o.OTE, Overlay: o.Overlay, Release: o.Release}, stage); err != nil {
		return err
	}
	squash := filepath.Join(work, "root.squashfs")
	if err := Squashfs(ctx, stage, squash); err != nil {
		return err
	}
	files, err := BootFiles(in)
	if err != nil {
		return err
	}
	step("disk image %s", o.Out)
	return image.Build(ctx, image.Spec{
		BootFiles: files,
		BootSize:  int64(b.Partitions.Boot), RootSize: int64(b.Partitions.Root), DataSize: dataSize,
		RootA: squash, Seed: b.Name + " " + o.Release, Out: o.Out, Progress: o.Progress,
	})
}

// MinSize is the least size of a board's image: its partitions, and a MiB
// before them and after them for the partition table and its backup.
func MinSize(b board.Board) int64 {
	p := b.Partitions
	return 2*image.MiB + int64(p.Boot) + 2*int64(p.Root) + int64(p.Data)
}

// DataSize is the data partition's size in an image of the given size
// (zero for the least).
func DataSize(b board.Board, size int64) (int64, error) {
	least := MinSize(b)
	switch {
	case size == 0:
		return int64(b.Partitions.Data), nil
	case size < least:
		return 0, fmt.Errorf("an image of %d MiB is too small for %s: its partitions need %d MiB", size>>20, b.Name, least>>20)
	case size%image.MiB != 0:
		return 0, fmt.Errorf("the image size must be a whole number of MiB, got %d bytes", size)
	}
	return int64(b.Partitions.Data) + size - least, nil
}
