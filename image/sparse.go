package image

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// blockSize is the unit of sparseness: zero blocks are not written, and
// the block map counts in these.
const blockSize = 4096

// place copies the boot filesystem, the root A squashfs and the data
// filesystem into the image at their offsets. The image is all hole, so
// zero blocks are skipped and stay holes.
func (b *builder) place(context.Context) error {
	img, err := os.OpenFile(b.path(diskFile), os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer img.Close()
	for _, c := range []struct {
		src  string
		part Partition
	}{
		{b.path(bootFile), b.layout.boot()},
		{b.spec.RootA, b.layout.rootA()},
		{b.path(dataFile), b.layout.data()},
	} {
		if err := copySparse(img, c.part.Start, c.part.Size, c.src); err != nil {
			return fmt.Errorf("place %s: %w", c.part.Name, err)
		}
	}
	b.progress("placed: boot, root A (squashfs, %d bytes) and data", b.layout.squashfs)
	return img.Close()
}

// copySparse writes the non-zero blocks of the file src into dst at off.
// src must fit in limit bytes; dst must read as zeros there.
func copySparse(dst *os.File, off, limit int64, src string) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if st.Size() > limit {
		return fmt.Errorf("%s is %s, more than the partition's %s", src, sizeString(st.Size()), sizeString(limit))
	}
	return eachDataRun(f, st.Size(), func(at int64, run []byte) error {
		_, err := dst.WriteAt(run, off+at)
		return err
	})
}

// eachDataRun calls fn, in order, with each run of consecutive blocks of
// f that are not all zeros (the last block may be short). Holes are
// skipped without reading; runs do not span more than a read buffer, so
// two runs may be adjacent.
func eachDataRun(f *os.File, size int64, fn func(off int64, run []byte) error) error {
	extents, err := dataExtents(f, size)
	if err != nil {
		return err
	}
	buf := make([]byte, 256*blockSize)
	zero := make([]byte, blockSize)
	for _, e := range extents {
		for off := e[0]; off < e[1]; off += int64(len(buf)) {
			n := int(min(int64(len(buf)), e[1]-off))
			if _, err := f.ReadAt(buf[:n], off); err != nil && !errors.Is(err, io.EOF) {
				return err
			}
			if err := eachRunIn(buf[:n], zero, func(i, j int) error { return fn(off+int64(i), buf[i:j]) }); err != nil {
				return err
			}
		}
	}
	return nil
}

// eachRunIn calls fn(i, j) for each maximal run buf[i:j] of blocks that
// are not zero.
func eachRunIn(buf, zero []byte, fn func(i, j int) error) error {
	start := -1
	for i := 0; i < len(buf); i += blockSize {
		j := min(i+blockSize, len(buf))
		isZero := bytes.Equal(buf[i:j], zero[:j-i])
		if !isZero && start < 0 {
			start = i
		}
		if isZero && start >= 0 {
			if err := fn(start, i); err != nil {
				return err
			}
			start = -1
		}
	}
	if start >= 0 {
		return fn(start, len(buf))
	}
	return nil
}

// dataExtents returns the [start, end) byte ranges of f below size that
// may hold data, block-aligned, found with SEEK_DATA and SEEK_HOLE.
// Filesystems without holes report one extent.
func dataExtents(f *os.File, size int64) ([][2]int64, error) {
	var out [][2]int64
	for off := int64(0); off < size; {
		start, err := f.Seek(off, unix.SEEK_DATA)
		if errors.Is(err, syscall.ENXIO) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("find data: %w", err)
		}
		end, err := f.Seek(start, unix.SEEK_HOLE)
		if err != nil {
			return nil, fmt.Errorf("find hole: %w", err)
		}
		start = start / blockSize * blockSize
		end = min((end+blockSize-1)/blockSize*blockSize, size)
		if start >= size {
			break
		}
		if k := len(out) - 1; k >= 0 && start <= out[k][1] {
			out[k][1] = max(out[k][1], end)
		} else {
			out = append(out, [2]int64{start, end})
		}
		off = end
	}
	return out, nil
}
