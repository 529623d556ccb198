package image

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/ote-edge/ote/image/gpt"
)

const (
	sectorSize = gpt.SectorSize
	// fixedTime is every timestamp written into an image: 2000-01-01
	// 00:00:00 UTC, in Unix seconds.
	fixedTime = 946684800
)

// GPT partition type GUIDs.
const (
	typeESP   = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B" // EFI System Partition
	typeLinux = "0FC63DAF-8483-4772-8E79-3D69D8477DE4" // Linux filesystem data
)

// layout is where everything goes in one image.
type layout struct {
	diskGUID string
	parts    []Partition // boot, root A, root B, data
	size     int64       // whole image: 1 MiB, the partitions, 1 MiB for the backup GPT
	volumeID string      // FAT volume id, 8 hex digits
	dataUUID string      // ext4 filesystem UUID
	dataHash string      // ext4 directory hash seed
	squashfs int64       // size of the root A squashfs
}

func (l layout) boot() Partition  { return l.parts[0] }
func (l layout) rootA() Partition { return l.parts[1] }
func (l layout) data() Partition  { return l.parts[3] }

// plan checks s and lays the image out. It reads nothing but RootA's size
// and magic.
func plan(s Spec) (layout, error) {
	if err := checkSpec(s); err != nil {
		return layout{}, err
	}
	rootA, err := checkSquashfs(s.RootA, s.RootSize)
	if err != nil {
		return layout{}, err
	}
	l := layout{
		diskGUID: seedGUID(s.Seed, "disk"),
		volumeID: seedVolumeID(s.Seed),
		dataUUID: seedGUID(s.Seed, "ext4 uuid"),
		dataHash: seedGUID(s.Seed, "ext4 hash seed"),
		squashfs: rootA,
	}
	start := int64(MiB)
	for i, p := range []struct {
		name, typ string
		size      int64
	}{
		{BootName, typeESP, s.BootSize},
		{RootAName, typeLinux, s.RootSize},
		{RootBName, typeLinux, s.RootSize},
		{DataName, typeLinux, s.DataSize},
	} {
		l.parts = append(l.parts, Partition{
			Number: i + 1, Name: p.name, TypeGUID: p.typ,
			GUID: seedGUID(s.Seed, "partition "+p.name), Start: start, Size: p.size,
		})
		start += p.size
	}
	l.size = start + MiB
	return l, nil
}

// checkSpec reports every problem with s's fields, sizes first.
func checkSpec(s Spec) error {
	var errs []error
	for _, z := range []struct {
		name string
		size int64
	}{{"boot", s.BootSize}, {"root", s.RootSize}, {"data", s.DataSize}} {
		if z.size <= 0 || z.size%MiB != 0 {
			errs = append(errs, fmt.Errorf("%s size %d bytes is not a positive multiple of 1 MiB (%d bytes)", z.name, z.size, MiB))
		}
	}
	if s.BootSize > 0 && s.BootSize < MinBootSize {
		errs = append(errs, fmt.Errorf("boot size %s is under the %s FAT32 needs", sizeString(s.BootSize), sizeString(MinBootSize)))
	}
	if s.Seed == "" {
		errs = append(errs, errors.New("no seed: it names the build and makes its GUIDs"))
	}
	if s.Out == "" {
		errs = append(errs, errors.New("no output path"))
	} else if st, err := os.Stat(s.Out); err == nil && st.IsDir() {
		errs = append(errs, fmt.Errorf("output %s is a folder", s.Out))
	}
	if s.RootA == "" {
		errs = append(errs, errors.New("no root A squashfs"))
	}
	if err := checkBootFiles(s.BootFiles, s.BootSize); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// checkSquashfs returns the size of the squashfs at path, or why it cannot
// be root A in a slot of slotSize bytes.
func checkSquashfs(path string, slotSize int64) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("root A squashfs: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("root A squashfs: %w", err)
	}
	if !st.Mode().IsRegular() {
		return 0, fmt.Errorf("root A squashfs %s is not a regular file", path)
	}
	magic := make([]byte, 4)
	if _, err := io.ReadFull(f, magic); err != nil {
		return 0, fmt.Errorf("root A squashfs %s: read magic: %w", path, err)
	}
	if string(magic) != "hsqs" {
		return 0, fmt.Errorf("root A %s is not a squashfs image: magic %q, want \"hsqs\"", path, magic)
	}
	if st.Size() > slotSize {
		return 0, fmt.Errorf("root A squashfs %s is %s, larger than the root size %s", path, sizeString(st.Size()), sizeString(slotSize))
	}
	return st.Size(), nil
}

// seedGUID derives a GUID from seed and label: the first 16 bytes of
// SHA-256, marked as an RFC 9562 version 8 (custom, name-based) UUID.
func seedGUID(seed, label string) string {
	sum := sha256.Sum256([]byte("ote-image\x00" + seed + "\x00" + label))
	b := sum[:16]
	b[6] = b[6]&0x0f | 0x80
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%X-%X-%X-%X-%X", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// seedVolumeID derives the 32-bit FAT volume id from seed, in hex.
func seedVolumeID(seed string) string {
	sum := sha256.Sum256([]byte("ote-image\x00" + seed + "\x00fat volume id"))
	return fmt.Sprintf("%X", sum[:4])
}

// sizeString writes n bytes for people: "40 MiB", or bytes and MiB.
func sizeString(n int64) string {
	if n%MiB == 0 {
		return fmt.Sprintf("%d MiB", n/MiB)
	}
	return fmt.Sprintf("%d bytes (%.2f MiB)", n, float64(n)/MiB)
}
