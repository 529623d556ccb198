package image

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"
)

// bootFile is the FAT filesystem while it is built, before it goes into
// the image.
const bootFile = "boot.vfat"

// makeBoot builds the FAT32 boot filesystem as a file: mkfs.vfat, then
// mmd for the folders and mcopy for the files, in sorted path order.
func (b *builder) makeBoot(ctx context.Context) error {
	boot := b.layout.boot()
	fat := b.path(bootFile)
	if err := createSized(fat, boot.Size); err != nil {
		return err
	}
	// --invariant fixes the times and would also fix the volume id, so -i
	// comes after it. -h is the partition's first sector, as FAT expects.
	if err := run(ctx, nil, "mkfs.vfat", "-F", "32", "-n", "OTE-BOOT", "--invariant",
		"-i", b.layout.volumeID, "-h", strconv.FormatInt(boot.Start/sectorSize, 10), fat); err != nil {
		return fmt.Errorf("boot partition: %w", err)
	}
	files, dirs := bootTree(b.spec.BootFiles)
	if len(dirs) > 0 {
		if err := run(ctx, nil, "mmd", append([]string{"-i", fat}, fatPaths(dirs)...)...); err != nil {
			return fmt.Errorf("boot partition: %w", err)
		}
	}
	for i, name := range files {
		if err := b.copyBootFile(ctx, fat, i, name); err != nil {
			return err
		}
	}
	b.progress("boot: FAT32 %s, volume id %s, %d files in %d folders", sizeString(boot.Size), b.layout.volumeID, len(files), len(dirs))
	return nil
}

// copyBootFile copies BootFiles[name] into the FAT file fat.
func (b *builder) copyBootFile(ctx context.Context, fat string, i int, name string) error {
	data := b.spec.BootFiles[name]
	src := b.path(fmt.Sprintf("boot-file-%d", i))
	if err := writeFixedTime(src, data); err != nil {
		return err
	}
	defer os.Remove(src)
	err := run(ctx, nil, "mcopy", "-m", "-D", "o", "-i", fat, src, "::"+name)
	var te *toolError
	if errors.As(err, &te) && strings.Contains(te.output, "Disk full") {
		return fmt.Errorf("boot files do not fit in the %s boot partition: %s is %d bytes, the boot files total %d bytes: %w",
			sizeString(b.spec.BootSize), name, len(data), totalSize(b.spec.BootFiles), err)
	}
	if err != nil {
		return fmt.Errorf("boot file %s: %w", name, err)
	}
	return nil
}

// writeFixedTime writes data to a new file at name dated fixedTime, so
// mcopy -m gives it that date whatever SOURCE_DATE_EPOCH does.
func writeFixedTime(name string, data []byte) error {
	if err := os.WriteFile(name, data, 0o644); err != nil {
		return err
	}
	t := time.Unix(fixedTime, 0)
	return os.Chtimes(name, t, t)
}

// checkBootFiles reports boot paths FAT or mtools cannot take, names that
// clash (FAT ignores case), and boot files that cannot fit in bootSize
// bytes whatever the FAT overhead.
func checkBootFiles(files map[string][]byte, bootSize int64) error {
	var errs []error
	valid := map[string][]byte{}
	for name, data := range files {
		if err := checkBootPath(name); err != nil {
			errs = append(errs, err)
			continue
		}
		valid[name] = data
	}
	names, dirs := bootTree(valid)
	seen := map[string]string{} // case-folded → path, of files and folders
	for _, name := range append(names, dirs...) {
		if other, ok := seen[strings.ToLower(name)]; ok {
			errs = append(errs, fmt.Errorf("boot path %q clashes with %q: FAT names ignore case, and a file cannot be a folder", name, other))
		}
		seen[strings.ToLower(name)] = name
	}
	if total := totalSize(files); bootSize > 0 && total > bootSize {
		errs = append(errs, fmt.Errorf("boot files total %d bytes, more than the %s boot partition", total, sizeString(bootSize)))
	}
	slices.SortFunc(errs, func(a, b error) int { return strings.Compare(a.Error(), b.Error()) })
	return errors.Join(errs...)
}

// checkBootPath reports a boot path that is not a clean relative slash
// path of names FAT allows.
func checkBootPath(name string) error {
	if !fs.ValidPath(name) || name == "." {
		return fmt.Errorf("boot file path %q is not a clean relative slash path", name)
	}
	for _, part := range strings.Split(name, "/") {
		if len(part) > 255 || strings.ContainsFunc(part, badFATRune) {
			return fmt.Errorf("boot file path %q: %q is not a FAT name", name, part)
		}
	}
	return nil
}

func badFATRune(r rune) bool { return r < 0x20 || strings.ContainsRune(`"*:<>?\|`, r) }

// bootTree returns the sorted file paths and the sorted folders that hold
// them (parents before children).
func bootTree(files map[string][]byte) (names, dirs []string) {
	set := map[string]bool{}
	for name := range files {
		names = append(names, name)
		for d := path.Dir(name); d != "."; d = path.Dir(d) {
			set[d] = true
		}
	}
	for d := range set {
		dirs = append(dirs, d)
	}
	slices.Sort(names)
	slices.Sort(dirs)
	return names, dirs
}

func fatPaths(names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = "::" + n
	}
	return out
}

func totalSize(files map[string][]byte) int64 {
	var n int64
	for _, data := range files {
		n += int64(len(data))
	}
	return n
}
