package image

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"strings"
	"unicode/utf16"

	"github.com/ote-edge/ote/image/gpt"
)

// Partition is one GPT partition entry.
type Partition struct {
	Number   int    // 1 for the first entry
	Name     string // GPT partition name, e.g. "ote-boot"
	TypeGUID string // upper-case, e.g. "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
	GUID     string // the partition's unique GUID, upper-case
	Start    int64  // bytes from the start of the disk
	Size     int64  // bytes
}

// diskFile is the image while it is built.
const diskFile = "disk.img"

// makeTable creates the image file, all hole, and writes the GPT with
// sfdisk.
func (b *builder) makeTable(ctx context.Context) error {
	img := b.path(diskFile)
	if err := createSized(img, b.layout.size); err != nil {
		return err
	}
	script := sfdiskScript(b.layout)
	if err := run(ctx, strings.NewReader(script), "sfdisk", "--quiet", "--no-reread", "--no-tell-kernel", img); err != nil {
		return fmt.Errorf("partition table: %w", err)
	}
	b.progress("table: GPT %s, %d partitions, disk %s", b.layout.diskGUID, len(b.layout.parts), sizeString(b.layout.size))
	return nil
}

// sfdiskScript is the sfdisk input for l: sizes in sectors.
func sfdiskScript(l layout) string {
	var s strings.Builder
	fmt.Fprintf(&s, "label: gpt\nlabel-id: %s\nunit: sectors\nfirst-lba: %d\n\n", l.diskGUID, MiB/sectorSize)
	for _, p := range l.parts {
		fmt.Fprintf(&s, "start=%d, size=%d, type=%s, uuid=%s, name=%q\n",
			p.Start/sectorSize, p.Size/sectorSize, p.TypeGUID, p.GUID, p.Name)
	}
	return s.String()
}

// ReadPartitions reads the partition table of the disk image img: the
// primary GPT, 512-byte sectors, checksums checked. It returns the used
// entries in table order.
func ReadPartitions(img string) ([]Partition, error) {
	f, err := os.Open(img)
	if err != nil {
		return nil, fmt.Errorf("read partitions: %w", err)
	}
	defer f.Close()
	parts, err := readGPT(f)
	if err != nil {
		return nil, fmt.Errorf("read partitions of %s: %w", img, err)
	}
	return parts, nil
}

// GPT entry fields used here (UEFI 2.10 §5.3.3).
const (
	gptNameOffset = 56
	gptNameLength = 72
	gptMaxLBA     = 1 << 48 // 128 PiB: keeps byte offsets in an int64
)

func readGPT(r io.ReaderAt) ([]Partition, error) {
	t, err := gpt.Read(r)
	if err != nil {
		return nil, err
	}
	var parts []Partition
	for i := range t.Len() {
		p, ok, err := parseGPTEntry(t.Entry(i))
		if err != nil {
			return nil, fmt.Errorf("GPT entry %d: %w", i+1, err)
		}
		if ok {
			p.Number = i + 1
			parts = append(parts, p)
		}
	}
	return parts, nil
}

// parseGPTEntry parses one entry; ok is false for an unused one.
func parseGPTEntry(e []byte) (p Partition, ok bool, err error) {
	if !gpt.Used(e) {
		return Partition{}, false, nil
	}
	first, last := gpt.LBAs(e)
	if last < first || last >= gptMaxLBA {
		return Partition{}, false, fmt.Errorf("LBAs %d to %d are not a partition", first, last)
	}
	return Partition{
		TypeGUID: guidString(e[0:16]),
		GUID:     guidString(e[16:32]),
		Name:     utf16Name(e[gptNameOffset : gptNameOffset+gptNameLength]),
		Start:    int64(first) * sectorSize,
		Size:     int64(last-first+1) * sectorSize,
	}, true, nil
}

// guidString writes a GPT GUID (first three fields little-endian).
func guidString(b []byte) string {
	le := binary.LittleEndian
	return fmt.Sprintf("%08X-%04X-%04X-%X-%X", le.Uint32(b[0:4]), le.Uint16(b[4:6]), le.Uint16(b[6:8]), b[8:10], b[10:16])
}

// utf16Name decodes a NUL-padded UTF-16LE name.
func utf16Name(b []byte) string {
	u := make([]uint16, 0, len(b)/2)
	for i := 0; i+1 < len(b); i += 2 {
		c := binary.LittleEndian.Uint16(b[i:])
		if c == 0 {
			break
		}
		u = append(u, c)
	}
	return string(utf16.Decode(u))
}
