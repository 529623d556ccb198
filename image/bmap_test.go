package image

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// bmapXML is a parsed bmap file.
type bmapXML struct {
	Version           string `xml:"version,attr"`
	ImageSize         string
	BlockSize         string
	BlocksCount       string
	MappedBlocksCount string
	ChecksumType      string
	BmapFileChecksum  string
	Ranges            []struct {
		Chksum string `xml:"chksum,attr"`
		Blocks string `xml:",chardata"`
	} `xml:"BlockMap>Range"`
}

// checkBmap parses the bmap file bmap of the image img back and checks
// it: the header fields, its own checksum, and that its ranges are exactly
// the blocks of img that are not all zeros, with their checksums.
func checkBmap(t *testing.T, img, bmap string) {
	t.Helper()
	raw := readFile(t, bmap)
	var m bmapXML
	if err := xml.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	data := readFile(t, img)
	blocks := (len(data) + blockSize - 1) / blockSize
	num := func(s string) int { n, _ := strconv.Atoi(strings.TrimSpace(s)); return n }
	if m.Version != "2.0" || num(m.ImageSize) != len(data) || num(m.BlockSize) != blockSize ||
		num(m.BlocksCount) != blocks || strings.TrimSpace(m.ChecksumType) != "sha256" {
		t.Errorf("bmap header: version %s, image size %s, block size %s, blocks %s, checksum %s; want 2.0, %d, %d, %d, sha256",
			m.Version, m.ImageSize, m.BlockSize, m.BlocksCount, m.ChecksumType, len(data), blockSize, blocks)
	}
	fileSum := strings.TrimSpace(m.BmapFileChecksum)
	sum := sha256.Sum256(bytes.Replace(raw, []byte(fileSum), []byte(zeroSum), 1))
	if got := hex.EncodeToString(sum[:]); got != fileSum {
		t.Errorf("BmapFileChecksum = %s, the file hashes to %s", fileSum, got)
	}
	mapped := make([]bool, blocks)
	mappedCount := 0
	for _, r := range m.Ranges {
		first, last := parseRange(t, r.Blocks)
		lo, hi := first*blockSize, min((last+1)*blockSize, len(data))
		if sum := sha256.Sum256(data[lo:hi]); hex.EncodeToString(sum[:]) != r.Chksum {
			t.Errorf("range %d-%d: chksum %s, not the sha256 of its bytes", first, last, r.Chksum)
		}
		for b := first; b <= last; b++ {
			mapped[b] = true
		}
		mappedCount += last - first + 1
	}
	if num(m.MappedBlocksCount) != mappedCount {
		t.Errorf("MappedBlocksCount = %s, the ranges hold %d", m.MappedBlocksCount, mappedCount)
	}
	for b := range blocks {
		block := data[b*blockSize : min((b+1)*blockSize, len(data))]
		if nonZero := !bytes.Equal(block, make([]byte, len(block))); nonZero != mapped[b] {
			t.Errorf("block %d: not all zeros %v, mapped %v", b, nonZero, mapped[b])
		}
	}
}

func parseRange(t *testing.T, s string) (first, last int) {
	t.Helper()
	a, b, ok := strings.Cut(strings.TrimSpace(s), "-")
	if !ok {
		b = a
	}
	first, err1 := strconv.Atoi(a)
	last, err2 := strconv.Atoi(b)
	if err1 != nil || err2 != nil || last < first {
		t.Fatalf("range %q is not N or FIRST-LAST", s)
	}
	return first, last
}

func TestBmapOfImage(t *testing.T) {
	s := testSpec(t, t.TempDir(), makeSquashfs(t, t.TempDir()))
	if err := Build(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	checkBmap(t, s.Out, s.Out+".bmap")
	if _, err := exec.LookPath("bmaptool"); err != nil {
		t.Log("bmaptool not installed: not copying with it")
		return
	}
	dest := filepath.Join(t.TempDir(), "flashed.img")
	tool(t, "bmaptool", "copy", "--bmap", s.Out+".bmap", s.Out, dest)
	if !bytes.Equal(readFile(t, dest), readFile(t, s.Out)) {
		t.Error("bmaptool copy did not reproduce the image")
	}
}

// TestMapBlocks maps a file with holes, zero blocks written as data, a
// run across the read buffer's edge and a short last block.
func TestMapBlocks(t *testing.T) {
	name := filepath.Join(t.TempDir(), "sparse")
	f, err := os.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	write := func(block int, b []byte) {
		if _, err := f.WriteAt(b, int64(block)*blockSize); err != nil {
			t.Fatal(err)
		}
	}
	write(0, []byte{1})
	write(1, make([]byte, blockSize)) // written, but zeros
	write(2, randomBytes(2*blockSize, 4))
	write(255, randomBytes(3*blockSize, 5)) // 255-257 across the 1 MiB buffer
	write(600, make([]byte, 3*blockSize))
	write(700, []byte("short last block"))
	st, _ := f.Stat()
	ranges, err := mapBlocks(f, st.Size())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range ranges {
		got = append(got, fmt.Sprintf("%d-%d", r.first, r.last))
	}
	if want := []string{"0-0", "2-3", "255-257", "700-700"}; !slices.Equal(got, want) {
		t.Errorf("mapBlocks = %q, want %q", got, want)
	}
	bmap := name + ".bmap"
	if err := os.WriteFile(bmap, formatBmap(st.Size(), ranges), 0o644); err != nil {
		t.Fatal(err)
	}
	checkBmap(t, name, bmap)
}
