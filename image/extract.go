package image

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
)

// ExtractBootFile copies the file at path name (slash-separated) out of
// the image's boot partition to out, without mounting: QEMU's direct
// kernel boot takes the kernel and initramfs from there.
func ExtractBootFile(ctx context.Context, img, name, out string) error {
	fat, err := bootFAT(img)
	if err != nil {
		return err
	}
	if err := run(ctx, nil, "mcopy", "-n", "-o", "-i", fat, "::"+name, out); err != nil {
		return fmt.Errorf("%s: %s: %w", img, name, err)
	}
	return nil
}

// bootFAT is the image's boot partition as mtools opens it: the image at
// the partition's byte offset.
func bootFAT(img string) (string, error) {
	if strings.Contains(img, "@@") {
		return "", errors.New(`mtools cannot open a path with "@@" in it`)
	}
	boot, err := findPartition(img, BootName)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%s@@%d", img, boot.Start), nil
}

// refreshCompanions rewrites the image's .bmap and .zst, where they
// exist, after the image changed in place: a stale block map could leave
// out blocks that now hold data.
func refreshCompanions(ctx context.Context, img string) error {
	if _, err := os.Stat(img + ".bmap"); err == nil {
		if _, err := writeBmap(img, img+".bmap"); err != nil {
			return err
		}
	}
	if _, err := os.Stat(img + ".zst"); err == nil {
		tmp := img + ".zst.tmp"
		if err := zstdFile(ctx, img, tmp); err != nil {
			os.Remove(tmp)
			return err
		}
		return os.Rename(tmp, img+".zst")
	}
	return nil
}

// replaceFile writes data to path through a temporary file and a rename.
func replaceFile(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
}
