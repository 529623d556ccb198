// Package gpt reads a disk's primary GUID partition table (UEFI 2.10
// §5.3), 512-byte sectors, with its checksums checked: for the image
// builder, which lists an image's partitions, and for a box's first boot,
// which grows its last partition to the end of a bigger disk.
package gpt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// SectorSize is the only logical sector size read.
const SectorSize = 512

// Limits of what is read, beyond which a header is taken for garbage.
const (
	headerMin   = 92
	maxEntries  = 1024
	maxEntrySz  = 4096
	entryMin    = 128
	maxEntryLBA = 1 << 32
)

// Table is a primary GPT as read.
type Table struct {
	// Header is the header's sector; its first HeaderSize bytes are
	// covered by its checksum.
	Header     []byte
	HeaderSize int
	// Entries is the partition entry array, EntrySize bytes an entry.
	Entries    []byte
	EntrySize  int
	EntriesLBA uint64
}

// Read reads the primary GPT of the disk r.
func Read(r io.ReaderAt) (*Table, error) {
	hdr := make([]byte, SectorSize)
	if _, err := r.ReadAt(hdr, SectorSize); err != nil {
		return nil, fmt.Errorf("read GPT header: %w", err)
	}
	if string(hdr[:8]) != "EFI PART" {
		return nil, errors.New("no GPT header at LBA 1 (not a GPT disk with 512-byte sectors)")
	}
	le := binary.LittleEndian
	size := le.Uint32(hdr[12:16])
	if size < headerMin || size > SectorSize {
		return nil, fmt.Errorf("GPT header size %d is not in [%d, %d]", size, headerMin, SectorSize)
	}
	if got, want := HeaderCRC(hdr[:size]), le.Uint32(hdr[16:20]); got != want {
		return nil, fmt.Errorf("GPT header checksum %08x, want %08x", got, want)
	}
	lba, n, esz := le.Uint64(hdr[72:80]), le.Uint32(hdr[80:84]), le.Uint32(hdr[84:88])
	if n == 0 || n > maxEntries || esz < entryMin || esz > maxEntrySz || esz%8 != 0 || lba < 2 || lba > maxEntryLBA {
		return nil, fmt.Errorf("GPT header: %d entries of %d bytes at LBA %d is not a table this reads", n, esz, lba)
	}
	entries := make([]byte, int(n)*int(esz))
	if _, err := r.ReadAt(entries, int64(lba)*SectorSize); err != nil {
		return nil, fmt.Errorf("read GPT entries: %w", err)
	}
	if got, want := crc32.ChecksumIEEE(entries), le.Uint32(hdr[88:92]); got != want {
		return nil, fmt.Errorf("GPT entries checksum %08x, want %08x", got, want)
	}
	return &Table{Header: hdr, HeaderSize: int(size), Entries: entries, EntrySize: int(esz), EntriesLBA: lba}, nil
}

// Len is the number of entries, used or not.
func (t *Table) Len() int { return len(t.Entries) / t.EntrySize }

// Entry is entry i (from 0), within Entries: writes to it change the
// table.
func (t *Table) Entry(i int) []byte { return t.Entries[i*t.EntrySize : (i+1)*t.EntrySize] }

// Used reports whether an entry describes a partition: its type GUID is
// not zero.
func Used(e []byte) bool { return !bytes.Equal(e[:16], make([]byte, 16)) }

// LBAs is an entry's first and last sector.
func LBAs(e []byte) (first, last uint64) {
	return binary.LittleEndian.Uint64(e[32:40]), binary.LittleEndian.Uint64(e[40:48])
}

// HeaderCRC is a GPT header's checksum, computed with its own field zero.
func HeaderCRC(h []byte) uint32 {
	c := bytes.Clone(h)
	clear(c[16:20])
	return crc32.ChecksumIEEE(c)
}
