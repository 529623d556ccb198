package cpio

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
)

// parse reads a newc archive back: name → entry, in order.
func parse(t *testing.T, b []byte) []Entry {
	t.Helper()
	var out []Entry
	off := 0
	field := func(i int) uint32 {
		v, err := strconv.ParseUint(string(b[off+6+8*i:off+14+8*i]), 16, 32)
		if err != nil {
			t.Fatalf("header at %d: %v", off, err)
		}
		return uint32(v)
	}
	align := func(n int) int { return (n + 3) &^ 3 }
	for {
		if string(b[off:off+6]) != "070701" {
			t.Fatalf("no newc magic at %d", off)
		}
		mode, size, major, minor, namesize := field(1), field(6), field(9), field(10), field(11)
		if field(5) != 0 {
			t.Errorf("mtime %d, want 0", field(5))
		}
		name := string(b[off+110 : off+110+int(namesize)-1])
		off = align(off + 110 + int(namesize))
		data := b[off : off+int(size)]
		off = align(off + int(size))
		if name == "TRAILER!!!" {
			if off != len(b) {
				t.Errorf("%d bytes after the trailer", len(b)-off)
			}
			return out
		}
		out = append(out, Entry{Name: name, Mode: mode, Data: data, Major: major, Minor: minor})
	}
}

func sample() []Entry {
	return []Entry{
		{Name: "init", Mode: TypeRegular | 0o755, Data: []byte("#!/bin/sh\n")},
		{Name: "lib/modules/6.1.0/kernel/fs/squashfs/squashfs.ko", Mode: TypeRegular | 0o644, Data: []byte("ko")},
		{Name: "dev/console", Mode: TypeChar | 0o600, Major: 5, Minor: 1},
		{Name: "bin/sh", Mode: TypeSymlink | 0o777, Data: []byte("busybox")},
		{Name: "lib-extra/x", Mode: TypeRegular | 0o600, Data: []byte("12345")},
	}
}

func archive(t *testing.T, entries []Entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := NewWriter(&buf)
	for _, e := range Sorted(entries) {
		if err := w.Write(e); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestWriteReadsBack(t *testing.T) {
	a := archive(t, sample())
	got := parse(t, a)
	var names []string
	for _, e := range got {
		names = append(names, e.Name)
	}
	want := []string{"bin", "bin/sh", "dev", "dev/console", "init", "lib", "lib/modules", "lib/modules/6.1.0",
		"lib/modules/6.1.0/kernel", "lib/modules/6.1.0/kernel/fs", "lib/modules/6.1.0/kernel/fs/squashfs",
		"lib/modules/6.1.0/kernel/fs/squashfs/squashfs.ko", "lib-extra", "lib-extra/x"}
	if len(names) != len(want) {
		t.Fatalf("entries %v, want %v", names, want)
	}
	for i := range want {
		if names[i] != want[i] {
			t.Fatalf("entries %v, want %v", names, want)
		}
	}
	for _, e := range got {
		switch e.Name {
		case "dev/console":
			if e.Mode != TypeChar|0o600 || e.Major != 5 || e.Minor != 1 {
				t.Errorf("console = %+v", e)
			}
		case "bin/sh":
			if string(e.Data) != "busybox" {
				t.Errorf("symlink target %q", e.Data)
			}
		case "lib-extra/x":
			if string(e.Data) != "12345" || e.Mode != TypeRegular|0o600 {
				t.Errorf("x = %+v", e)
			}
		}
	}
	if again := archive(t, sample()); !bytes.Equal(a, again) {
		t.Error("the same entries gave two different archives")
	}
}

func TestWriteRejectsBadEntries(t *testing.T) {
	for _, e := range []Entry{
		{Name: "/etc/passwd", Mode: TypeRegular | 0o644},
		{Name: "../escape", Mode: TypeRegular | 0o644},
		{Name: "a//b", Mode: TypeRegular | 0o644},
		{Name: "", Mode: TypeDir | 0o755},
	} {
		if err := NewWriter(&bytes.Buffer{}).Write(e); !errors.Is(err, ErrBadName) {
			t.Errorf("Write(%q) = %v, want ErrBadName", e.Name, err)
		}
	}
	w := NewWriter(&bytes.Buffer{})
	w.Write(Entry{Name: "a", Mode: TypeDir | 0o755})
	if err := w.Write(Entry{Name: "a", Mode: TypeDir | 0o755}); !errors.Is(err, ErrBadName) {
		t.Errorf("a name twice: %v", err)
	}
	if err := w.Write(Entry{Name: "p", Mode: 0o010644}); err == nil {
		t.Error("a FIFO was accepted")
	}
}

// GNU cpio, as a second reader, extracts what was written.
func TestGNUCpioExtracts(t *testing.T) {
	if testing.Short() {
		t.Skip("needs cpio (make deps)")
	}
	bin, err := exec.LookPath("cpio")
	if err != nil {
		t.Fatal("cpio is not installed: run make deps")
	}
	dir := t.TempDir()
	entries := sample()[:2] // no device node: extracting one needs privileges a test should not rely on
	entries = append(entries, sample()[3:]...)
	cmd := exec.Command(bin, "-i", "-d", "--no-absolute-filenames", "--quiet")
	cmd.Dir = dir
	cmd.Stdin = bytes.NewReader(archive(t, entries))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cpio -i: %v\n%s", err, out)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "lib-extra", "x")); err != nil || string(b) != "12345" {
		t.Errorf("lib-extra/x = %q, %v", b, err)
	}
	if target, err := os.Readlink(filepath.Join(dir, "bin", "sh")); err != nil || target != "busybox" {
		t.Errorf("bin/sh -> %q, %v", target, err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "init")); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("init: %v, %v", fi, err)
	}
}
