package image

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
)

// toolEnv is the whole environment of every tool run: no user config, UTC,
// and every clock fixed at fixedTime (mtools reads SOURCE_DATE_EPOCH;
// mke2fs 1.47.0 ignores it but honours E2FSPROGS_FAKE_TIME).
func toolEnv() []string {
	epoch := strconv.Itoa(fixedTime)
	return []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=/nonexistent", // no ~/.mtoolsrc
		"LC_ALL=C",
		"TZ=UTC",
		"SOURCE_DATE_EPOCH=" + epoch,
		"E2FSPROGS_FAKE_TIME=" + epoch,
	}
}

// toolError is a tool that failed, with what it printed.
type toolError struct {
	tool   string
	err    error
	output string
}

func (e *toolError) Error() string {
	if e.output == "" {
		return fmt.Sprintf("%s: %v", e.tool, e.err)
	}
	return fmt.Sprintf("%s: %v: %s", e.tool, e.err, e.output)
}

func (e *toolError) Unwrap() error { return e.err }

// run runs a tool with toolEnv and stdin (nil: empty), and returns a
// *toolError with its output if it fails.
func run(ctx context.Context, stdin io.Reader, tool string, args ...string) error {
	cmd := exec.CommandContext(ctx, tool, args...)
	cmd.Env = toolEnv()
	cmd.Stdin = stdin
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return &toolError{tool: tool, err: err, output: strings.TrimSpace(out.String())}
	}
	return nil
}

// needTools reports the tools that are not on PATH, with their Debian
// packages.
func needTools(tools ...string) error {
	pkg := map[string]string{
		"mkfs.vfat": "dosfstools", "mmd": "mtools", "mcopy": "mtools", "mdir": "mtools",
		"mkfs.ext4": "e2fsprogs", "sfdisk": "fdisk", "zstd": "zstd",
	}
	var missing []string
	for _, t := range tools {
		if _, err := exec.LookPath(t); err != nil {
			missing = append(missing, fmt.Sprintf("%s (Debian package %s)", t, pkg[t]))
		}
	}
	if len(missing) > 0 {
		return errors.New("missing tools: " + strings.Join(missing, ", "))
	}
	return nil
}

// createSized creates the file name, size bytes long and all hole.
func createSized(name string, size int64) error {
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
