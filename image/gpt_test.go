package image

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// smallTable returns the first 34 sectors of a 4 MiB disk that sfdisk
// partitioned with l's script, and the disk's path.
func smallTable(t testing.TB) ([]byte, string) {
	t.Helper()
	img := filepath.Join(t.TempDir(), "disk.img")
	if err := createSized(img, 4*MiB); err != nil {
		t.Fatal(err)
	}
	script := "label: gpt\nlabel-id: " + seedGUID("gpt", "disk") + "\nfirst-lba: 2048\n" +
		"start=2048, size=2048, type=" + typeESP + ", uuid=" + seedGUID("gpt", "1") + ", name=\"ote-boot\"\n" +
		"start=4096, size=2048, type=" + typeLinux + ", uuid=" + seedGUID("gpt", "2") + ", name=\"données ☃\"\n"
	if err := run(context.Background(), strings.NewReader(script), "sfdisk", "--quiet", img); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	return b[:34*sectorSize], img
}

func TestReadPartitions(t *testing.T) {
	table, img := smallTable(t)
	got, err := ReadPartitions(img)
	if err != nil {
		t.Fatal(err)
	}
	want := []Partition{
		{1, "ote-boot", typeESP, seedGUID("gpt", "1"), 1 * MiB, 1 * MiB},
		{2, "données ☃", typeLinux, seedGUID("gpt", "2"), 2 * MiB, 1 * MiB},
	}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("ReadPartitions = %v, want %v", got, want)
	}

	for _, tt := range []struct {
		name string
		at   int
		want string
	}{
		{"header", 512 + 40, "GPT header checksum"},    // first usable LBA
		{"entries", 1024 + 40, "GPT entries checksum"}, // entry 1's last LBA
		{"signature", 512, "no GPT header at LBA 1"},   // "EFI PART"
	} {
		b := bytes.Clone(table)
		b[tt.at] ^= 0xff
		if _, err := readGPT(bytes.NewReader(b)); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("readGPT(%s corrupted) = %v, want %q", tt.name, err, tt.want)
		}
	}
	if _, err := ReadPartitions(filepath.Join(t.TempDir(), "missing.img")); err == nil {
		t.Error("ReadPartitions(missing file) = nil error")
	}
}

func FuzzReadGPT(f *testing.F) {
	table, _ := smallTable(f)
	f.Add(table)
	f.Add(make([]byte, 34*sectorSize))
	f.Fuzz(func(t *testing.T, b []byte) {
		parts, err := readGPT(bytes.NewReader(b))
		for _, p := range parts {
			if err != nil || p.Size <= 0 || p.Start < 0 || p.Number < 1 {
				t.Errorf("readGPT = %v, %v: a bad partition", parts, err)
			}
		}
	})
}
