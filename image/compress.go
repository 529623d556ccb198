package image

import (
	"context"
	"fmt"
	"os"
	"strconv"
)

// zstdLevel is the compression level of Out+".zst". The image is mostly
// squashfs, already compressed, so higher levels buy little and cost
// minutes.
const zstdLevel = 10

// compress writes the image compressed with zstd. The output is the same
// for the same image: the level and thread count are fixed, and a zstd
// frame holds no file name or time (it does hold the content size and a
// checksum).
func (b *builder) compress(ctx context.Context) error {
	img := b.path(diskFile)
	if err := zstdFile(ctx, img, img+".zst"); err != nil {
		return err
	}
	st, err := os.Stat(img + ".zst")
	if err != nil {
		return fmt.Errorf("compress: %w", err)
	}
	b.progress("zstd: %d bytes", st.Size())
	return nil
}

// zstdFile compresses src into dst at zstdLevel, on one thread.
func zstdFile(ctx context.Context, src, dst string) error {
	if err := run(ctx, nil, "zstd", "-q", "-f", "--no-progress", "-"+strconv.Itoa(zstdLevel), "-T1", "-o", dst, src); err != nil {
		return fmt.Errorf("compress: %w", err)
	}
	return nil
}
