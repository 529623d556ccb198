package rootfs

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/ote-edge/ote/rootfs/cpio"
	"github.com/ote-edge/ote/rootfs/initrd"
)

// Initramfs writes the initramfs for a kernel: the init (the ote-initrd
// binary for the board's arch), the boot modules with the list of them in
// load order, and the few directories and the console node the init
// needs before devtmpfs is up. The archive is an uncompressed newc cpio:
// under emulation the kernel unpacks it faster than it would inflate it.
// The same inputs give the same bytes.
func Initramfs(ctx context.Context, k Kernel, modules []string, initBinary string) ([]byte, error) {
	chain, err := k.ModuleChain(ctx, modules)
	if err != nil {
		return nil, err
	}
	init, err := os.ReadFile(initBinary)
	if err != nil {
		return nil, fmt.Errorf("rootfs: the initramfs init: %w", err)
	}
	entries := []cpio.Entry{
		{Name: "init", Mode: cpio.TypeRegular | 0o755, Data: init},
		{Name: "dev", Mode: cpio.TypeDir | 0o755},
		{Name: "dev/console", Mode: cpio.TypeChar | 0o600, Major: 5, Minor: 1},
		{Name: "proc", Mode: cpio.TypeDir | 0o555},
		{Name: "sys", Mode: cpio.TypeDir | 0o555},
		{Name: "run", Mode: cpio.TypeDir | 0o755},
		{Name: "newroot", Mode: cpio.TypeDir | 0o755},
	}
	var list strings.Builder
	fmt.Fprintf(&list, "# boot modules of %s, in load order\n", k.Version)
	for _, rel := range chain {
		data, err := os.ReadFile(filepath.Join(k.ModulesDir(), rel))
		if err != nil {
			return nil, err
		}
		name := path.Join("lib/modules", k.Version, filepath.ToSlash(rel))
		entries = append(entries, cpio.Entry{Name: name, Mode: cpio.TypeRegular | 0o644, Data: data})
		list.WriteString(name + "\n")
	}
	entries = append(entries, cpio.Entry{Name: initrd.ModulesList, Mode: cpio.TypeRegular | 0o644, Data: []byte(list.String())})
	var buf bytes.Buffer
	w := cpio.NewWriter(&buf)
	for _, e := range cpio.Sorted(entries) {
		if err := w.Write(e); err != nil {
			return nil, err
		}
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
