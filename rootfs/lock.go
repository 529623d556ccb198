// Package rootfs assembles what boots on a board: the kernel and its boot
// modules from pinned Debian packages, the initramfs, and the read-only
// root filesystem with OTE's binaries, as reproducible files.
package rootfs

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/ote-edge/ote/board"
	"github.com/ote-edge/ote/rootfs/apt"
)

// Lock pins the Debian packages the images are built from: for each
// architecture and each package a board wants, the exact package,
// version and checksum.
type Lock struct {
	Entries []LockEntry
}

// LockEntry is one pinned package.
type LockEntry struct {
	Arch   string // the board's architecture
	Wanted string // as a board names it, e.g. linux-image-cloud-amd64
	apt.Package
}

// Wanted lists, per architecture, the Debian packages the boards need in
// their images, and whether each is a metapackage to follow to the
// package it depends on (the kernel's).
func Wanted(boards []board.Board) map[string][]string {
	out := map[string][]string{}
	add := func(arch, name string) {
		if name != "" && !slices.Contains(out[arch], name) {
			out[arch] = append(out[arch], name)
		}
	}
	for _, b := range boards {
		for _, name := range b.Packages() {
			add(b.Arch, name)
		}
	}
	for arch := range out {
		slices.Sort(out[arch])
	}
	return out
}

// isMeta says whether a wanted package is a metapackage to follow.
func isMeta(name string) bool { return strings.HasPrefix(name, "linux-image-") }

// Resolve pins every wanted package at the version the mirror offers now,
// with an APT root per architecture under cache.
func Resolve(ctx context.Context, cache string, boards []board.Board, progress *os.File) (Lock, error) {
	var lock Lock
	wanted := Wanted(boards)
	arches := make([]string, 0, len(wanted))
	for a := range wanted {
		arches = append(arches, a)
	}
	slices.Sort(arches)
	for _, arch := range arches {
		root := &apt.Root{Dir: aptRoot(cache, arch), Arch: arch, Progress: progress}
		if err := root.Update(ctx); err != nil {
			return lock, err
		}
		pkgs, err := root.Resolve(ctx, wanted[arch], isMeta)
		if err != nil {
			return lock, err
		}
		for i, p := range pkgs {
			lock.Entries = append(lock.Entries, LockEntry{Arch: arch, Wanted: wanted[arch][i], Package: p})
		}
	}
	return lock, nil
}

// Find returns the pinned package a board wants.
func (l Lock) Find(arch, wanted string) (apt.Package, error) {
	for _, e := range l.Entries {
		if e.Arch == arch && e.Wanted == wanted {
			return e.Package, nil
		}
	}
	return apt.Package{}, fmt.Errorf("rootfs: %s for %s is not in the lock: run make lock", wanted, arch)
}

const lockHeader = `# Debian packages the images are built from, pinned (make lock).
# arch wanted package version package-arch sha256
`

// Marshal writes the lock as text, one package per line.
func (l Lock) Marshal() []byte {
	var b bytes.Buffer
	b.WriteString(lockHeader)
	entries := slices.Clone(l.Entries)
	slices.SortFunc(entries, func(a, b LockEntry) int {
		return strings.Compare(a.Arch+" "+a.Wanted, b.Arch+" "+b.Wanted)
	})
	for _, e := range entries {
		fmt.Fprintf(&b, "%s %s %s %s %s %s\n", e.Arch, e.Wanted, e.Name, e.Version, e.Package.Arch, e.SHA256)
	}
	return b.Bytes()
}

// ParseLock reads a lock written by Marshal.
func ParseLock(file string, data []byte) (Lock, error) {
	var l Lock
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 6 || len(f[5]) != 64 {
			return l, fmt.Errorf("%s:%d: want: arch wanted package version package-arch sha256", file, n)
		}
		l.Entries = append(l.Entries, LockEntry{Arch: f[0], Wanted: f[1], Package: apt.Package{Name: f[2], Version: f[3], Arch: f[4], SHA256: f[5]}})
	}
	return l, sc.Err()
}

// aptRoot is where the private APT root of an architecture lives in the
// build cache.
func aptRoot(cache, arch string) string { return filepath.Join(cache, "apt-"+arch) }
