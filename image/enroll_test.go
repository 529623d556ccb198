package image

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestEnroll(t *testing.T) {
	s := testSpec(t, t.TempDir(), makeSquashfs(t, t.TempDir()))
	delete(s.BootFiles, "ote/enroll.yaml") // Enroll makes ::ote
	if err := Build(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	boot, err := findPartition(s.Out, BootName)
	if err != nil {
		t.Fatal(err)
	}
	fat := fmt.Sprintf("%s@@%d", s.Out, boot.Start)
	built := readFile(t, s.Out)
	for _, yaml := range []string{
		testEnroll,
		"server: parent.example:7443\ntoken: a-longer-token-for-the-second-write\ntags: {site: berlin-1}\n",
	} {
		if err := Enroll(context.Background(), s.Out, []byte(yaml)); err != nil {
			t.Fatal(err)
		}
		if got := tool(t, "mtype", "-i", fat, "::ote/enroll.yaml"); got != yaml {
			t.Errorf("mtype ::ote/enroll.yaml = %q, want %q", got, yaml)
		}
		assertSameOutside(t, built, readFile(t, s.Out), boot)
	}
	if got := tool(t, "mdir", "-i", fat, "-b", "::ote"); strings.Count(got, "\n") != 1 {
		t.Errorf("mdir ::ote = %q, want one file", got)
	}

	before := readFile(t, s.Out)
	err = Enroll(context.Background(), s.Out, []byte("server: a:1\ntoken: t\nsecret: x\n"))
	if err == nil || !strings.Contains(err.Error(), "not valid") || !strings.Contains(err.Error(), `unknown key "secret"`) {
		t.Errorf("Enroll(corrupt yaml) = %v, want an error naming the unknown key", err)
	}
	if !bytes.Equal(readFile(t, s.Out), before) {
		t.Error("Enroll(corrupt yaml) changed the image")
	}
}

// assertSameOutside fails t if before and after differ outside p.
func assertSameOutside(t *testing.T, before, after []byte, p Partition) {
	t.Helper()
	end := p.Start + p.Size
	if len(before) != len(after) || !bytes.Equal(before[:p.Start], after[:p.Start]) || !bytes.Equal(before[end:], after[end:]) {
		t.Errorf("bytes outside %s changed", p.Name)
	}
	if bytes.Equal(before[p.Start:end], after[p.Start:end]) {
		t.Errorf("%s did not change", p.Name)
	}
}

func TestEnrollNoBootPartition(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "other.img")
	if err := createSized(img, 4*MiB); err != nil {
		t.Fatal(err)
	}
	cmd := "label: gpt\nstart=2048, size=2048, type=" + typeLinux + ", name=\"something-else\"\n"
	if err := run(context.Background(), strings.NewReader(cmd), "sfdisk", "--quiet", img); err != nil {
		t.Fatal(err)
	}
	before := readFile(t, img)
	err := Enroll(context.Background(), img, []byte(testEnroll))
	if err == nil || !strings.Contains(err.Error(), "no ote-boot partition") {
		t.Errorf("Enroll(image without ote-boot) = %v, want a no ote-boot partition error", err)
	}
	if !bytes.Equal(readFile(t, img), before) {
		t.Error("Enroll changed an image without ote-boot")
	}

	plain := filepath.Join(dir, "plain.img")
	if err := os.WriteFile(plain, make([]byte, 64<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Enroll(context.Background(), plain, []byte(testEnroll)); err == nil || !strings.Contains(err.Error(), "no GPT header") {
		t.Errorf("Enroll(image without a GPT) = %v, want a no GPT header error", err)
	}
}
