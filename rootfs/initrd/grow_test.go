package initrd

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// A disk image grown after it was written: the last partition takes the
// new room, and sfdisk finds the table sound, with its backup at the end.
func TestGrowLast(t *testing.T) {
	if testing.Short() {
		t.Skip("needs sfdisk (make deps)")
	}
	img := filepath.Join(t.TempDir(), "disk.img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.Truncate(40 << 20)
	cmd := exec.Command("sfdisk", "-q", img)
	cmd.Stdin = strings.NewReader("label: gpt\nunit: sectors\nfirst-lba: 2048\n" +
		"start=2048, size=20480, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name=\"ote-boot\"\n" +
		"start=22528, size=57344, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=\"ote-data\"\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sfdisk: %v %s", err, out)
	}
	if grown, err := GrowLast(f, 40<<20, 2); err != nil || grown {
		t.Fatalf("on a disk of the image's size: grown %v, %v; want nothing to do", grown, err)
	}
	f.Truncate(100 << 20)
	if grown, err := GrowLast(f, 100<<20, 2); err != nil || !grown {
		t.Fatalf("GrowLast = %v, %v", grown, err)
	}
	out, err := exec.Command("sfdisk", "--json", img).Output()
	if err != nil {
		t.Fatal(err)
	}
	var table struct {
		Partitiontable struct {
			Lastlba    int64
			Partitions []struct {
				Start, Size int64
				Name        string
			}
		}
	}
	json.Unmarshal(out, &table)
	parts := table.Partitiontable.Partitions
	if len(parts) != 2 || parts[1].Start != 22528 || (parts[1].Start+parts[1].Size)*512 != 99<<20 || parts[0].Size != 20480 {
		t.Errorf("after growing: %s", out)
	}
	if out, err := exec.Command("sfdisk", "--verify", img).CombinedOutput(); err != nil || !strings.Contains(string(out), "No errors detected") || strings.Contains(string(out), "mismatch") {
		t.Errorf("sfdisk --verify: %v %s", err, out)
	}
	if grown, err := GrowLast(f, 100<<20, 2); err != nil || grown {
		t.Errorf("a second time: grown %v, %v; want nothing to do", grown, err)
	}
	if _, err := GrowLast(f, 100<<20, 1); err == nil {
		t.Error("a partition that is not the last was grown")
	}
}

func TestExt4Size(t *testing.T) {
	if testing.Short() {
		t.Skip("needs mkfs.ext4")
	}
	p := filepath.Join(t.TempDir(), "data.ext4")
	f, _ := os.Create(p)
	f.Truncate(64 << 20)
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-b", "4096", p).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v %s", err, out)
	}
	blocks, bsize, err := Ext4Size(f)
	if err != nil || bsize != 4096 || blocks != 64<<20/4096 {
		t.Errorf("Ext4Size = %d blocks of %d, %v", blocks, bsize, err)
	}
	f.Close()
}
