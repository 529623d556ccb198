package image

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestBuildErrors(t *testing.T) {
	inputs := t.TempDir()
	squashfs := makeSquashfs(t, inputs)
	big := filepath.Join(inputs, "big.sqfs") // a squashfs magic and 2 MiB
	if err := os.WriteFile(big, append([]byte("hsqs"), make([]byte, 2*MiB)...), 0o644); err != nil {
		t.Fatal(err)
	}
	notSquashfs := filepath.Join(inputs, "root.ext4")
	if err := os.WriteFile(notSquashfs, make([]byte, 4096), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name   string
		change func(*Spec)
		want   []string
	}{
		{"boot size not MiB", func(s *Spec) { s.BootSize = 40*MiB + 1 }, []string{"boot size 41943041 bytes is not a positive multiple of 1 MiB"}},
		{"root size zero", func(s *Spec) { s.RootSize = 0 }, []string{"root size 0 bytes is not a positive multiple of 1 MiB"}},
		{"data size negative", func(s *Spec) { s.DataSize = -MiB }, []string{"data size -1048576 bytes is not a positive multiple of 1 MiB"}},
		{"boot too small for FAT32", func(s *Spec) { s.BootSize = 32 * MiB }, []string{"boot size 32 MiB is under the 33 MiB FAT32 needs"}},
		{"root A larger than root", func(s *Spec) { s.RootA, s.RootSize = big, MiB }, []string{"big.sqfs is 2097156 bytes (2.00 MiB), larger than the root size 1 MiB"}},
		{"root A missing", func(s *Spec) { s.RootA = filepath.Join(inputs, "missing.sqfs") }, []string{"root A squashfs", "missing.sqfs: no such file or directory"}},
		{"root A a folder", func(s *Spec) { s.RootA = inputs }, []string{"is not a regular file"}},
		{"root A not squashfs", func(s *Spec) { s.RootA = notSquashfs }, []string{`root.ext4 is not a squashfs image: magic "\x00\x00\x00\x00"`}},
		{"boot files larger than boot", func(s *Spec) { s.BootSize, s.BootFiles["big"] = 33*MiB, make([]byte, 33*MiB) }, []string{"more than the 33 MiB boot partition"}},
		{"boot files do not fit the FAT", func(s *Spec) {
			s.BootSize, s.BootFiles = 33*MiB, map[string][]byte{"big": randomBytes(33*MiB-256<<10, 3)}
		}, []string{"boot files do not fit in the 33 MiB boot partition", "big is 34340864 bytes", "mcopy: exit status 1: Disk full"}},
		{"boot path not clean", func(s *Spec) { s.BootFiles["../x"] = nil }, []string{`boot file path "../x" is not a clean relative slash path`}},
		{"boot path absolute", func(s *Spec) { s.BootFiles["/x"] = nil }, []string{`"/x" is not a clean`}},
		{"boot name not FAT", func(s *Spec) { s.BootFiles["a:b"] = nil }, []string{`"a:b" is not a FAT name`}},
		{"boot names clash", func(s *Spec) { s.BootFiles["efi/x"] = nil }, []string{`"efi" clashes with "EFI"`}},
		{"boot file is a folder", func(s *Spec) { s.BootFiles["ote"] = nil }, []string{`boot path "ote" clashes with "ote"`}},
		{"no seed", func(s *Spec) { s.Seed = "" }, []string{"no seed"}},
		{"sizes and seed", func(s *Spec) { s.RootSize, s.Seed = 1, "" }, []string{"root size 1 bytes", "no seed"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			s := testSpec(t, dir, squashfs)
			tt.change(&s)
			err := buildOver(t, s)
			for _, want := range tt.want {
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Errorf("Build() = %v, want an error with %q", err, want)
				}
			}
		})
	}
}

func TestBuildOutIsFolder(t *testing.T) {
	s := testSpec(t, t.TempDir(), makeSquashfs(t, t.TempDir()))
	s.Out = t.TempDir()
	if err := Build(context.Background(), s); err == nil || !strings.Contains(err.Error(), "is a folder") {
		t.Errorf("Build(Out a folder) = %v, want an error saying so", err)
	}
}

func TestBuildCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	s := testSpec(t, t.TempDir(), makeSquashfs(t, t.TempDir()))
	s.Out = filepath.Join(t.TempDir(), "ote.img")
	if err := buildOverCtx(t, ctx, s); !errors.Is(err, context.Canceled) {
		t.Errorf("Build(canceled) = %v, want context.Canceled", err)
	}
}

// buildOver runs Build over an existing s.Out and checks that it is
// untouched and that nothing else is left in its folder.
func buildOver(t *testing.T, s Spec) error {
	t.Helper()
	return buildOverCtx(t, context.Background(), s)
}

func buildOverCtx(t *testing.T, ctx context.Context, s Spec) error {
	t.Helper()
	old := []byte("the image from before")
	if err := os.WriteFile(s.Out, old, 0o644); err != nil {
		t.Fatal(err)
	}
	err := Build(ctx, s)
	if !bytes.Equal(readFile(t, s.Out), old) {
		t.Error("Build changed the existing image")
	}
	if got, want := dirNames(t, filepath.Dir(s.Out)), []string{filepath.Base(s.Out)}; !slices.Equal(got, want) {
		t.Errorf("files left in the output folder = %q, want %q", got, want)
	}
	return err
}
