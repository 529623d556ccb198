package image

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// sfdiskJSON is the part of sfdisk --json this checks.
type sfdiskJSON struct {
	PartitionTable struct {
		Label      string `json:"label"`
		ID         string `json:"id"`
		FirstLBA   int64  `json:"firstlba"`
		Partitions []struct {
			Start, Size      int64
			Type, UUID, Name string
		} `json:"partitions"`
	} `json:"partitiontable"`
}

func TestBuild(t *testing.T) {
	dir := t.TempDir()
	s := testSpec(t, dir, makeSquashfs(t, t.TempDir()))
	var progress bytes.Buffer
	s.Progress = &progress
	if err := Build(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	if got, want := dirNames(t, dir), []string{"ote.img", "ote.img.bmap", "ote.img.zst"}; !slices.Equal(got, want) {
		t.Errorf("files in the output folder = %q, want %q", got, want)
	}
	t.Log(progress.String())
	if got := strings.Count(progress.String(), "\n"); got < 5 {
		t.Errorf("progress has %d lines, want one per step:\n%s", got, progress.String())
	}
	st, err := os.Stat(s.Out)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := st.Size(), int64((1+40+8+8+8+1)*MiB); got != want {
		t.Errorf("image size = %d, want %d", got, want)
	}
	if used := st.Sys().(*syscall.Stat_t).Blocks * 512; used > st.Size()/4 {
		t.Errorf("image uses %d bytes on disk of %d: not sparse", used, st.Size())
	}
	parts := checkTable(t, s)
	checkBoot(t, s, parts[0])
	checkRoots(t, s, parts[1], parts[2])
	checkData(t, s, parts[3])
	tool(t, "zstd", "-q", "-d", "-f", "-o", filepath.Join(dir, "unzstd.img"), s.Out+".zst")
	if !bytes.Equal(readFile(t, filepath.Join(dir, "unzstd.img")), readFile(t, s.Out)) {
		t.Error("the .zst does not decompress to the image")
	}
}

// checkTable compares sfdisk --json, ReadPartitions and the layout the
// spec asks for, and returns ReadPartitions.
func checkTable(t *testing.T, s Spec) []Partition {
	t.Helper()
	var sf sfdiskJSON
	if err := json.Unmarshal([]byte(tool(t, "sfdisk", "--json", s.Out)), &sf); err != nil {
		t.Fatal(err)
	}
	pt := sf.PartitionTable
	if pt.Label != "gpt" || pt.ID != seedGUID(s.Seed, "disk") || pt.FirstLBA != 2048 {
		t.Errorf("sfdisk: label %s, id %s, first-lba %d; want gpt, %s, 2048", pt.Label, pt.ID, pt.FirstLBA, seedGUID(s.Seed, "disk"))
	}
	want := []Partition{
		{1, BootName, typeESP, seedGUID(s.Seed, "partition ote-boot"), 1 * MiB, 40 * MiB},
		{2, RootAName, typeLinux, seedGUID(s.Seed, "partition ote-root-a"), 41 * MiB, 8 * MiB},
		{3, RootBName, typeLinux, seedGUID(s.Seed, "partition ote-root-b"), 49 * MiB, 8 * MiB},
		{4, DataName, typeLinux, seedGUID(s.Seed, "partition ote-data"), 57 * MiB, 8 * MiB},
	}
	var fromSfdisk []Partition
	for i, p := range pt.Partitions {
		fromSfdisk = append(fromSfdisk, Partition{i + 1, p.Name, p.Type, p.UUID, p.Start * 512, p.Size * 512})
	}
	if !slices.Equal(fromSfdisk, want) {
		t.Errorf("sfdisk --json partitions =\n%v\nwant\n%v", fromSfdisk, want)
	}
	got, err := ReadPartitions(s.Out)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, fromSfdisk) {
		t.Errorf("ReadPartitions =\n%v\nsfdisk says\n%v", got, fromSfdisk)
	}
	return got
}

func checkBoot(t *testing.T, s Spec, boot Partition) {
	t.Helper()
	fat := fmt.Sprintf("%s@@%d", s.Out, boot.Start)
	list := tool(t, "mdir", "-i", fat, "::")
	if want := fmt.Sprintf("Volume Serial Number is %s-%s", seedVolumeID(s.Seed)[:4], seedVolumeID(s.Seed)[4:]); !strings.Contains(list, want) || !strings.Contains(list, "OTE-BOOT") {
		t.Errorf("mdir :: = %q, want label OTE-BOOT and %q", list, want)
	}
	var files []string
	for _, line := range strings.Fields(tool(t, "mdir", "-i", fat, "-b", "-/", "::")) {
		if !strings.HasSuffix(line, "/") {
			files = append(files, strings.TrimPrefix(line, "::/"))
		}
	}
	slices.Sort(files)
	if want, _ := bootTree(s.BootFiles); !slices.Equal(files, want) {
		t.Errorf("boot files = %q, want %q", files, want)
	}
	for name, data := range s.BootFiles {
		if got := tool(t, "mtype", "-i", fat, "::"+name); got != string(data) {
			t.Errorf("mtype ::%s: %d bytes, not the %d bytes given", name, len(got), len(data))
		}
	}
	if !strings.Contains(tool(t, "mdir", "-i", fat, "::EFI/BOOT"), "BOOTX64  EFI    102400 2000-01-01   0:00") {
		t.Error("mdir ::EFI/BOOT shows no BOOTX64.EFI dated 2000-01-01 0:00")
	}
	vfat := filepath.Join(t.TempDir(), "boot.vfat")
	if err := os.WriteFile(vfat, section(t, s.Out, boot.Start, boot.Size), 0o644); err != nil {
		t.Fatal(err)
	}
	tool(t, "fsck.vfat", "-n", vfat)
}

func checkRoots(t *testing.T, s Spec, a, b Partition) {
	t.Helper()
	sq := readFile(t, s.RootA)
	got := section(t, s.Out, a.Start, a.Size)
	if !bytes.Equal(got[:len(sq)], sq) || !bytes.Equal(got[len(sq):], make([]byte, a.Size-int64(len(sq)))) {
		t.Error("root A is not the squashfs followed by zeros")
	}
	if !bytes.Equal(section(t, s.Out, b.Start, b.Size), make([]byte, b.Size)) {
		t.Error("root B is not all zeros")
	}
}

func checkData(t *testing.T, s Spec, data Partition) {
	t.Helper()
	ext4 := filepath.Join(t.TempDir(), "data.ext4")
	if err := os.WriteFile(ext4, section(t, s.Out, data.Start, data.Size), 0o644); err != nil {
		t.Fatal(err)
	}
	tool(t, "e2fsck", "-fn", ext4)
	sb := tool(t, "dumpe2fs", "-h", ext4)
	for _, want := range []string{
		"Filesystem volume name:   ote-data",
		"Filesystem UUID:          " + strings.ToLower(seedGUID(s.Seed, "ext4 uuid")),
		"Directory Hash Seed:      " + strings.ToLower(seedGUID(s.Seed, "ext4 hash seed")),
		"Filesystem created:       Sat Jan  1 00:00:00 2000",
		"Block size:               4096",
	} {
		if !strings.Contains(sb, want) {
			t.Errorf("dumpe2fs -h has no %q:\n%s", want, sb)
		}
	}
}

func TestReproducible(t *testing.T) {
	rootA := makeSquashfs(t, t.TempDir())
	var outs []string
	for i, name := range []string{"first.img", "second.img"} {
		if i > 0 {
			// Past FAT's 2-second and ext4's 1-second clock, so a
			// timestamp that is not fixed shows.
			time.Sleep(2100 * time.Millisecond)
		}
		s := testSpec(t, t.TempDir(), rootA)
		s.Out = filepath.Join(filepath.Dir(s.Out), name)
		if err := Build(context.Background(), s); err != nil {
			t.Fatal(err)
		}
		outs = append(outs, s.Out)
	}
	for _, ext := range []string{"", ".zst", ".bmap"} {
		if !bytes.Equal(readFile(t, outs[0]+ext), readFile(t, outs[1]+ext)) {
			t.Errorf("%s and %s differ", outs[0]+ext, outs[1]+ext)
		}
	}
}

func TestSeedNamesTheIDs(t *testing.T) {
	a, b := layoutFor(t, "one"), layoutFor(t, "two")
	ids := map[string]bool{}
	for _, l := range []layout{a, b} {
		for _, id := range []string{l.diskGUID, l.volumeID, l.dataUUID, l.dataHash, l.parts[0].GUID, l.parts[1].GUID, l.parts[2].GUID, l.parts[3].GUID} {
			if ids[id] {
				t.Errorf("id %s appears twice", id)
			}
			ids[id] = true
		}
	}
	if got := layoutFor(t, "one"); got.diskGUID != a.diskGUID || got.volumeID != a.volumeID {
		t.Error("the same seed gave other ids")
	}
	if g := a.diskGUID; g[14] != '8' || !strings.ContainsRune("89AB", rune(g[19])) {
		t.Errorf("GUID %s is not an RFC 9562 version 8 UUID", g)
	}
}

func layoutFor(t *testing.T, seed string) layout {
	t.Helper()
	s := testSpec(t, t.TempDir(), "")
	s.Seed = seed
	s.RootA = filepath.Join(t.TempDir(), "root.sqfs")
	if err := os.WriteFile(s.RootA, []byte("hsqs"), 0o644); err != nil {
		t.Fatal(err)
	}
	l, err := plan(s)
	if err != nil {
		t.Fatal(err)
	}
	return l
}
