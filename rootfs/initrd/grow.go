package initrd

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ote-edge/ote/image/gpt"
)

// The data partition is written small and grows to fill the disk at the
// first boot on a bigger one: the partition table's last partition is
// extended to the end of the disk (its backup header moved there), the
// kernel re-reads the table before anything is mounted, and the ext4
// filesystem is resized online once mounted.

const sector = gpt.SectorSize

// Disk is a whole disk: its device node, size, and the number of the
// partition to grow.
type Disk struct {
	Dev       string
	Size      int64
	Partition int
}

// DiskOf finds the disk that holds partition dev (e.g. /dev/vda4) from
// sysfs.
func DiskOf(sys, devDir, dev string) (Disk, error) {
	name := filepath.Base(dev)
	link, err := filepath.EvalSymlinks(filepath.Join(sys, "class", "block", name))
	if err != nil {
		return Disk{}, err
	}
	diskDir := filepath.Dir(link)
	read := func(p string) (int64, error) {
		b, err := os.ReadFile(p)
		if err != nil {
			return 0, err
		}
		return strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	}
	part, err := read(filepath.Join(link, "partition"))
	if err != nil {
		return Disk{}, fmt.Errorf("%s is not a partition: %w", dev, err)
	}
	sectors, err := read(filepath.Join(diskDir, "size"))
	if err != nil {
		return Disk{}, err
	}
	return Disk{Dev: filepath.Join(devDir, filepath.Base(diskDir)), Size: sectors * sector, Partition: int(part)}, nil
}

// GrowLast extends partition number part, which must be the last on the
// disk, to the end of a GPT disk of size bytes (at a 1 MiB boundary), and
// moves the backup table to the disk's end. It reports whether it changed
// anything; a table that already reaches the end is left alone.
func GrowLast(f interface {
	io.ReaderAt
	io.WriterAt
}, size int64, part int) (bool, error) {
	t, err := gpt.Read(f)
	if err != nil {
		return false, err
	}
	if part < 1 || part > t.Len() {
		return false, fmt.Errorf("GPT: %d entries, no partition %d", t.Len(), part)
	}
	le := binary.LittleEndian
	hdr, hsize, entries, entriesLBA := t.Header, t.HeaderSize, t.Entries, t.EntriesLBA
	entrySectors := (uint64(len(entries)) + sector - 1) / sector
	lastLBA := uint64(size/sector) - 1
	lastUsable := lastLBA - entrySectors - 1
	e := t.Entry(part - 1)
	start, end := gpt.LBAs(e)
	for i := range t.Len() {
		o := t.Entry(i)
		if first, _ := gpt.LBAs(o); i != part-1 && gpt.Used(o) && first > start {
			return false, fmt.Errorf("partition %d is not the last on the disk", part)
		}
	}
	newEnd := (lastUsable+1)/2048*2048 - 1 // whole MiB
	if newEnd < end {
		newEnd = end
	}
	if le.Uint64(hdr[32:40]) == lastLBA && newEnd == end {
		return false, nil
	}
	if lastLBA < le.Uint64(hdr[32:40]) {
		return false, errors.New("the disk is smaller than its partition table says")
	}
	le.PutUint64(e[40:48], newEnd)
	entriesCRC := crc32.ChecksumIEEE(entries)

	// Backup first: if power goes in between, the primary still holds.
	backup := bytes.Clone(hdr)
	le.PutUint64(backup[24:32], lastLBA)
	le.PutUint64(backup[32:40], 1)
	le.PutUint64(backup[48:56], lastUsable)
	le.PutUint64(backup[72:80], lastLBA-entrySectors)
	le.PutUint32(backup[88:92], entriesCRC)
	le.PutUint32(backup[16:20], gpt.HeaderCRC(backup[:hsize]))
	if _, err := f.WriteAt(entries, int64(lastLBA-entrySectors)*sector); err != nil {
		return false, err
	}
	if _, err := f.WriteAt(backup, int64(lastLBA)*sector); err != nil {
		return false, err
	}
	// The protective MBR covers the whole disk, as far as 32 bits go.
	mbr := make([]byte, sector)
	if _, err := f.ReadAt(mbr, 0); err != nil {
		return false, err
	}
	if mbr[510] == 0x55 && mbr[511] == 0xaa && mbr[446+4] == 0xee {
		le.PutUint32(mbr[446+12:446+16], uint32(min(lastLBA, 0xffffffff)))
		if _, err := f.WriteAt(mbr, 0); err != nil {
			return false, err
		}
	}
	le.PutUint64(hdr[32:40], lastLBA)
	le.PutUint64(hdr[48:56], lastUsable)
	le.PutUint32(hdr[88:92], entriesCRC)
	le.PutUint32(hdr[16:20], gpt.HeaderCRC(hdr[:hsize]))
	if _, err := f.WriteAt(entries, int64(entriesLBA)*sector); err != nil {
		return false, err
	}
	if _, err := f.WriteAt(hdr, sector); err != nil {
		return false, err
	}
	return true, nil
}

// GrowDisk grows the data partition of disk d and has the kernel read the
// table again. Nothing on the disk may be mounted yet.
func GrowDisk(d Disk) (bool, error) {
	f, err := os.OpenFile(d.Dev, os.O_RDWR|os.O_SYNC, 0)
	if err != nil {
		return false, err
	}
	defer f.Close()
	grown, err := GrowLast(f, d.Size, d.Partition)
	if err != nil || !grown {
		return false, err
	}
	if err := f.Sync(); err != nil {
		return true, err
	}
	if err := unix.IoctlSetInt(int(f.Fd()), unix.BLKRRPART, 0); err != nil {
		return true, fmt.Errorf("re-read the partition table: %w", err)
	}
	return true, nil
}

// ext4ResizeFS is EXT4_IOC_RESIZE_FS: _IOW('f', 16, __u64). It takes the
// new block count.
const ext4ResizeFS = 0x40086610

// Ext4Size reads an ext4 filesystem's block count and block size from
// its superblock.
func Ext4Size(r io.ReaderAt) (blocks uint64, blockSize uint64, err error) {
	sb := make([]byte, 1024)
	if _, err := r.ReadAt(sb, 1024); err != nil {
		return 0, 0, err
	}
	le := binary.LittleEndian
	if le.Uint16(sb[0x38:0x3a]) != 0xef53 {
		return 0, 0, errors.New("no ext4 superblock")
	}
	blocks = uint64(le.Uint32(sb[4:8]))
	if le.Uint32(sb[0x60:0x64])&0x80 != 0 { // INCOMPAT_64BIT
		blocks |= uint64(le.Uint32(sb[0x150:0x154])) << 32
	}
	return blocks, 1024 << le.Uint32(sb[24:28]), nil
}

// ResizeExt4 grows the ext4 filesystem on dev, mounted at dir, online to
// fill the partition, if the partition is bigger than the filesystem.
func ResizeExt4(dev, dir string) (bool, error) {
	f, err := os.Open(dev)
	if err != nil {
		return false, err
	}
	blocks, bsize, err := Ext4Size(f)
	if err == nil {
		var size int64
		if size, err = f.Seek(0, io.SeekEnd); err == nil && uint64(size)/bsize > blocks {
			blocks = uint64(size) / bsize
		} else {
			blocks = 0
		}
	}
	f.Close()
	if err != nil || blocks == 0 {
		return false, err
	}
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return false, err
	}
	defer unix.Close(fd)
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), ext4ResizeFS, uintptr(unsafePointer(&blocks))); errno != 0 {
		return false, fmt.Errorf("resize ext4 to %d blocks: %w", blocks, errno)
	}
	return true, nil
}
