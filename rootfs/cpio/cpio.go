// Package cpio writes cpio archives in the "newc" format, the one the
// Linux kernel unpacks as an initramfs. Archives are reproducible: the
// caller gives every entry's mode and owner, all times are zero, inode
// numbers count up in the order entries are written, and Sorted orders a
// tree's entries so that parents come before children.
package cpio

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"
)

// File types of the mode field (the upper bits, as in stat(2)).
const (
	TypeDir     = 0o040000
	TypeRegular = 0o100000
	TypeSymlink = 0o120000
	TypeChar    = 0o020000
)

// Entry is one member of an archive.
type Entry struct {
	Name string // relative, slash-separated, without a leading "/" or "./"
	Mode uint32 // file type and permission bits
	UID  uint32
	GID  uint32
	// Data is a regular file's content, or a symlink's target.
	Data []byte
	// Major and Minor number a device node.
	Major, Minor uint32
}

// Writer writes an archive.
type Writer struct {
	w      *bufio.Writer
	n      int64 // bytes written, for padding
	ino    uint32
	closed bool
	names  map[string]bool
}

// NewWriter returns a Writer on w. Close writes the trailer.
func NewWriter(w io.Writer) *Writer {
	return &Writer{w: bufio.NewWriter(w), names: map[string]bool{}}
}

// ErrBadName is returned for an entry name that is empty, absolute, not
// clean, or already written.
var ErrBadName = errors.New("cpio: bad entry name")

// Write adds e to the archive.
func (w *Writer) Write(e Entry) error {
	if w.closed {
		return errors.New("cpio: write after Close")
	}
	if e.Name == "" || e.Name == "." || strings.HasPrefix(e.Name, "/") || path.Clean(e.Name) != e.Name || strings.HasPrefix(e.Name, "../") || e.Name == ".." {
		return fmt.Errorf("%w: %q", ErrBadName, e.Name)
	}
	if w.names[e.Name] {
		return fmt.Errorf("%w: %q twice", ErrBadName, e.Name)
	}
	switch e.Mode &^ 0o7777 {
	case TypeDir, TypeChar:
		if len(e.Data) > 0 {
			return fmt.Errorf("cpio: %s: a directory or device has no data", e.Name)
		}
	case TypeRegular, TypeSymlink:
	default:
		return fmt.Errorf("cpio: %s: unsupported file type %#o", e.Name, e.Mode&^0o7777)
	}
	w.names[e.Name] = true
	w.ino++
	nlink := uint32(1)
	if e.Mode&^0o7777 == TypeDir {
		nlink = 2
	}
	w.record(e.Name, w.ino, e.Mode, e.UID, e.GID, nlink, e.Data, e.Major, e.Minor)
	return nil
}

// record writes one header, name and body.
func (w *Writer) record(name string, ino, mode, uid, gid, nlink uint32, data []byte, major, minor uint32) {
	hdr := fmt.Sprintf("070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		ino, mode, uid, gid, nlink, 0 /* mtime */, len(data), 0, 0, major, minor, len(name)+1, 0)
	w.put([]byte(hdr))
	w.put([]byte(name))
	w.put([]byte{0})
	w.pad()
	w.put(data)
	w.pad()
}

func (w *Writer) put(b []byte) {
	n, _ := w.w.Write(b) // a bufio.Writer keeps its first error for Flush
	w.n += int64(n)
}

func (w *Writer) pad() {
	if r := w.n % 4; r != 0 {
		w.put(make([]byte, 4-r))
	}
}

// Close writes the trailer and flushes. It does not close the underlying
// writer.
func (w *Writer) Close() error {
	if w.closed {
		return nil
	}
	w.closed = true
	w.record("TRAILER!!!", 0, 0, 0, 0, 1, nil, 0, 0)
	return w.w.Flush()
}

// Sorted returns entries ordered by path with each directory before what
// it holds, as the kernel needs them, and adds the directories that are
// missing (0755, root's) above any entry.
func Sorted(entries []Entry) []Entry {
	have := map[string]bool{}
	for _, e := range entries {
		have[e.Name] = true
	}
	out := slices.Clone(entries)
	for _, e := range entries {
		for dir := path.Dir(e.Name); dir != "." && !have[dir]; dir = path.Dir(dir) {
			have[dir] = true
			out = append(out, Entry{Name: dir, Mode: TypeDir | 0o755})
		}
	}
	// Compare path elements, so that "a/b" sorts right after "a" and
	// before "a-b" ('-' < '/').
	slices.SortFunc(out, func(a, b Entry) int {
		return slices.Compare(strings.Split(a.Name, "/"), strings.Split(b.Name, "/"))
	})
	return out
}
