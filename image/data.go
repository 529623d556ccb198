package image

import (
	"context"
	"fmt"
	"os"
	"time"
)

// dataFile is the ext4 filesystem while it is built.
const dataFile = "data.ext4"

// makeData builds the empty ext4 data filesystem as a file with
// mkfs.ext4 -d over an empty folder, so nothing is mounted. UUID and hash
// seed come from the seed and run() fixes mke2fs's clock
// (E2FSPROGS_FAKE_TIME), so the bytes are the same on every build.
//
// -T default gives 4 KiB blocks and 16 KiB per inode whatever the size:
// mke2fs would pick the "small" type (1 KiB blocks, 4 KiB per inode) for a
// few hundred MiB, which suits the disk badly once the filesystem has grown
// to fill it.
func (b *builder) makeData(ctx context.Context) error {
	data := b.layout.data()
	empty := b.path("data-root")
	if err := os.Mkdir(empty, 0o755); err != nil {
		return fmt.Errorf("data partition: %w", err)
	}
	t := time.Unix(fixedTime, 0)
	if err := os.Chmod(empty, 0o755); err != nil { // whatever the umask
		return fmt.Errorf("data partition: %w", err)
	}
	if err := os.Chtimes(empty, t, t); err != nil {
		return fmt.Errorf("data partition: %w", err)
	}
	file := b.path(dataFile)
	if err := createSized(file, data.Size); err != nil {
		return err
	}
	if err := run(ctx, nil, "mkfs.ext4", "-q", "-F", "-T", "default", "-b", "4096",
		"-L", DataName, "-U", b.layout.dataUUID,
		"-E", "hash_seed="+b.layout.dataHash+",root_owner=0:0",
		"-d", empty, file); err != nil {
		return fmt.Errorf("data partition: %w", err)
	}
	b.progress("data: ext4 %s, uuid %s", sizeString(data.Size), b.layout.dataUUID)
	return nil
}
