// Package image writes OTE disk images and edits them in place.
//
// An image is a GPT disk with 512-byte sectors and four partitions, 1 MiB
// aligned, in this order and with these names (the initramfs finds them by
// name):
//
//	ote-boot    FAT32 EFI System Partition: bootloader, kernel, ote/enroll.yaml
//	ote-root-a  root slot A: the root squashfs, zero-padded
//	ote-root-b  root slot B: empty, the same size, for the first update
//	ote-data    ext4, labelled ote-data; it grows to fill the disk on first boot
//
// Nothing is mounted: each filesystem is built as a file with the usual
// tools (mkfs.vfat and mtools, mkfs.ext4 -d, sfdisk for the table) and
// copied into the image at its offset, skipping zero blocks so the image
// stays sparse. Build also writes the image compressed with zstd and a
// bmaptool block map next to it.
//
// Images are reproducible: every GUID, the FAT volume id and the ext4 UUID
// and hash seed derive from Spec.Seed, and every timestamp is 2000-01-01
// 00:00:00 UTC, so the same inputs give the same bytes.
//
// Enroll replaces ote/enroll.yaml inside an existing image without
// rebuilding it; ReadPartitions reads an image's partition table.
package image

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/ote-edge/ote/rootfs/initrd"
)

// Partition names, as written in the GPT: the ones the initramfs looks for.
const (
	BootName  = initrd.PartBoot
	RootAName = initrd.PartRootA
	RootBName = initrd.PartRootB
	DataName  = initrd.PartData
)

// MiB is a mebibyte. Every partition size is a positive multiple of it.
const MiB = 1 << 20

// MinBootSize is the smallest boot partition: FAT32 needs at least 65525
// clusters.
const MinBootSize = 33 * MiB

// Spec is one image to write.
type Spec struct {
	// BootFiles are the contents of the FAT boot partition, by slash path
	// ("EFI/BOOT/BOOTX64.EFI", "ote/enroll.yaml").
	BootFiles map[string][]byte
	// BootSize, RootSize and DataSize are partition sizes in bytes, each a
	// positive multiple of MiB; BootSize is at least MinBootSize.
	BootSize, RootSize, DataSize int64
	// RootA is the path of the squashfs image for root slot A. Slot B
	// stays empty but is RootSize bytes too.
	RootA string
	// Seed names the build: every GUID, the FAT volume id and the ext4
	// UUID and hash seed derive from it, so the same inputs give the same
	// bytes. Two images that may be on one machine need different seeds.
	Seed string
	// Out is the image path. Build also writes Out+".zst" and Out+".bmap".
	Out string
	// Progress, if not nil, gets one line per step.
	Progress io.Writer
}

// Build writes the image s describes, with its .zst and .bmap. The files
// are written in a temporary folder next to s.Out and renamed into place
// at the end: on error nothing is left behind and an existing s.Out is
// untouched.
func Build(ctx context.Context, s Spec) error {
	if err := build(ctx, s); err != nil {
		return fmt.Errorf("build image %s: %w", s.Out, err)
	}
	return nil
}

func build(ctx context.Context, s Spec) error {
	l, err := plan(s)
	if err != nil {
		return err
	}
	if err := needTools("mkfs.vfat", "mmd", "mcopy", "mkfs.ext4", "sfdisk", "zstd"); err != nil {
		return err
	}
	work, err := os.MkdirTemp(filepath.Dir(s.Out), "."+filepath.Base(s.Out)+".tmp-")
	if err != nil {
		return fmt.Errorf("temporary folder: %w", err)
	}
	defer os.RemoveAll(work)
	b := &builder{spec: s, layout: l, work: work}
	for _, step := range b.steps() {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := step(ctx); err != nil {
			return err
		}
	}
	return nil
}

// builder holds one Build's state; its files live in work.
type builder struct {
	spec   Spec
	layout layout
	work   string
}

func (b *builder) steps() []func(context.Context) error {
	return []func(context.Context) error{
		b.makeBoot,
		b.makeData,
		b.makeTable,
		b.place,
		b.makeBmap,
		b.compress,
		b.publish,
	}
}

// path names a file in the work folder.
func (b *builder) path(name string) string { return filepath.Join(b.work, name) }

func (b *builder) progress(format string, args ...any) {
	if b.spec.Progress != nil {
		fmt.Fprintf(b.spec.Progress, "image: "+format+"\n", args...)
	}
}

// publish renames the outputs into place, the image last.
func (b *builder) publish(context.Context) error {
	for _, ext := range []string{".zst", ".bmap", ""} {
		if err := os.Rename(b.path(diskFile+ext), b.spec.Out+ext); err != nil {
			return fmt.Errorf("publish: %w", err)
		}
	}
	b.progress("wrote %s, %s.zst and %s.bmap", b.spec.Out, b.spec.Out, b.spec.Out)
	return nil
}
