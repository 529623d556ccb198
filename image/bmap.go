package image

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"os"
	"strings"
)

// bmapRange is a run of mapped blocks, first to last inclusive, with the
// SHA-256 of their bytes.
type bmapRange struct {
	first, last int64
	sum         string
}

// makeBmap writes the block map of the image, for bmaptool.
func (b *builder) makeBmap(context.Context) error {
	ranges, err := writeBmap(b.path(diskFile), b.path(diskFile+".bmap"))
	if err != nil {
		return err
	}
	b.progress("bmap: %d of %d blocks mapped, in %d ranges", mappedBlocks(ranges), b.layout.size/blockSize, len(ranges))
	return nil
}

// writeBmap writes the block map of the image img to dst, through a
// temporary file and a rename, and returns its ranges.
func writeBmap(img, dst string) ([]bmapRange, error) {
	f, err := os.Open(img)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	ranges, err := mapBlocks(f, st.Size())
	if err != nil {
		return nil, fmt.Errorf("block map: %w", err)
	}
	if err := replaceFile(dst, formatBmap(st.Size(), ranges)); err != nil {
		return nil, fmt.Errorf("block map: %w", err)
	}
	return ranges, nil
}

// mapBlocks returns the runs of blocks of f (size bytes) that are not all
// zeros, with their checksums.
func mapBlocks(f *os.File, size int64) ([]bmapRange, error) {
	var (
		ranges []bmapRange
		cur    *bmapRange
		h      hash.Hash
	)
	end := func() {
		if cur != nil {
			cur.sum = hex.EncodeToString(h.Sum(nil))
			ranges = append(ranges, *cur)
			cur = nil
		}
	}
	err := eachDataRun(f, size, func(off int64, run []byte) error {
		first, last := off/blockSize, (off+int64(len(run))-1)/blockSize
		if cur == nil || first != cur.last+1 {
			end()
			cur, h = &bmapRange{first: first}, sha256.New()
		}
		cur.last = last
		h.Write(run)
		return nil
	})
	if err != nil {
		return nil, err
	}
	end()
	return ranges, nil
}

func mappedBlocks(ranges []bmapRange) int64 {
	var n int64
	for _, r := range ranges {
		n += r.last - r.first + 1
	}
	return n
}

// zeroSum is the BmapFileChecksum placeholder while the bmap's own
// checksum is computed.
const zeroSum = "0000000000000000000000000000000000000000000000000000000000000000"

// formatBmap writes a bmap file, format version 2.0 as bmaptool writes it,
// for an image of size bytes. A single block is written "N", as bmaptool
// does; a run "first-last".
func formatBmap(size int64, ranges []bmapRange) []byte {
	blocks := (size + blockSize - 1) / blockSize
	mapped := mappedBlocks(ranges)
	var s strings.Builder
	fmt.Fprintf(&s, `<?xml version="1.0" ?>
<!-- The block map of an image: the blocks that hold data and have to be
     copied to the device (bmaptool copy); every other block is zeros.
     The 'version' attribute is the format version, major.minor. -->

<bmap version="2.0">
    <!-- Image size in bytes: %s -->
    <ImageSize> %d </ImageSize>

    <!-- Size of a block in bytes -->
    <BlockSize> %d </BlockSize>

    <!-- Count of blocks in the image file -->
    <BlocksCount> %d </BlocksCount>

    <!-- Count of mapped blocks: %s or %.1f%% -->
    <MappedBlocksCount> %d </MappedBlocksCount>

    <!-- Type of checksum used in this file -->
    <ChecksumType> sha256 </ChecksumType>

    <!-- The checksum of this bmap file. When it is calculated, the value of
         the checksum has be zero (all ASCII "0" symbols). -->
    <BmapFileChecksum> %s </BmapFileChecksum>

    <!-- The block map: ranges of blocks, or single blocks, each with the
         checksum of its bytes in the 'chksum' attribute. -->
    <BlockMap>
`, sizeString(size), size, blockSize, blocks, sizeString(mapped*blockSize), 100*float64(mapped)/float64(max(blocks, 1)), mapped, zeroSum)
	for _, r := range ranges {
		if r.first == r.last {
			fmt.Fprintf(&s, "        <Range chksum=\"%s\"> %d </Range>\n", r.sum, r.first)
		} else {
			fmt.Fprintf(&s, "        <Range chksum=\"%s\"> %d-%d </Range>\n", r.sum, r.first, r.last)
		}
	}
	s.WriteString("    </BlockMap>\n</bmap>\n")
	out := []byte(s.String())
	sum := sha256.Sum256(out)
	return bytes.Replace(out, []byte(zeroSum), []byte(hex.EncodeToString(sum[:])), 1)
}
