package gpt

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"strings"
	"testing"
)

// disk is a 64-sector disk whose GPT has 128 entries of 128 bytes at LBA
// 2, the first one from LBA 34 to 40.
func disk() []byte {
	le := binary.LittleEndian
	b := make([]byte, 64*SectorSize)
	entries := b[2*SectorSize : 2*SectorSize+128*128]
	copy(entries[0:16], "a type GUID....!")
	le.PutUint64(entries[32:40], 34)
	le.PutUint64(entries[40:48], 40)
	h := b[SectorSize : SectorSize+92]
	copy(h, "EFI PART")
	le.PutUint32(h[8:12], 0x00010000)
	le.PutUint32(h[12:16], 92)
	le.PutUint64(h[24:32], 1)
	le.PutUint64(h[72:80], 2)
	le.PutUint32(h[80:84], 128)
	le.PutUint32(h[84:88], 128)
	le.PutUint32(h[88:92], crc32.ChecksumIEEE(entries))
	le.PutUint32(h[16:20], HeaderCRC(h))
	return b
}

func TestRead(t *testing.T) {
	tab, err := Read(bytes.NewReader(disk()))
	if err != nil {
		t.Fatal(err)
	}
	if tab.Len() != 128 || tab.EntrySize != 128 || tab.EntriesLBA != 2 || tab.HeaderSize != 92 {
		t.Errorf("Read = %d entries of %d bytes at LBA %d, header of %d; want 128 of 128 at 2, 92", tab.Len(), tab.EntrySize, tab.EntriesLBA, tab.HeaderSize)
	}
	if first, last := LBAs(tab.Entry(0)); !Used(tab.Entry(0)) || first != 34 || last != 40 {
		t.Errorf("entry 0: used %v, LBAs %d to %d; want used, 34 to 40", Used(tab.Entry(0)), first, last)
	}
	if Used(tab.Entry(1)) {
		t.Error("entry 1 is used")
	}
	for _, tc := range []struct {
		name string
		at   int
		want string
	}{
		{"signature", SectorSize, "no GPT header at LBA 1"},
		{"header", SectorSize + 24, "GPT header checksum"},
		{"entries", 2*SectorSize + 40, "GPT entries checksum"},
	} {
		b := disk()
		b[tc.at] ^= 0xff
		if _, err := Read(bytes.NewReader(b)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Read(%s corrupted) = %v, want %q", tc.name, err, tc.want)
		}
	}
	if _, err := Read(bytes.NewReader(disk()[:SectorSize])); err == nil {
		t.Error("Read(a disk of one sector) = nil error")
	}
}

// FuzzRead: whatever the bytes, a table read has whole entries.
func FuzzRead(f *testing.F) {
	f.Add(disk())
	f.Fuzz(func(t *testing.T, b []byte) {
		tab, err := Read(bytes.NewReader(b))
		if err != nil {
			return
		}
		if tab.Len() < 1 || tab.Len()*tab.EntrySize != len(tab.Entries) || len(tab.Header) != SectorSize {
			t.Errorf("Read = %d entries of %d bytes in %d, header of %d bytes", tab.Len(), tab.EntrySize, len(tab.Entries), len(tab.Header))
		}
		for i := range tab.Len() {
			LBAs(tab.Entry(i))
		}
	})
}
