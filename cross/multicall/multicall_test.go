package multicall

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
)

func testProgram(ran *[]string) *Program {
	return &Program{
		Name:    "prog",
		Summary: "a test program",
		Commands: []Command{
			{Name: "ok", Summary: "succeeds", Run: func(ctx context.Context, args []string) error {
				*ran = append(*ran, "ok "+strings.Join(args, " "))
				return nil
			}},
			{Name: "fail", Summary: "fails", Run: func(ctx context.Context, args []string) error {
				return errors.New("broken")
			}},
			{Name: "flags", Args: "[--n N]", Summary: "parses flags", Run: func(ctx context.Context, args []string) error {
				fs := FlagSet("flags", &bytes.Buffer{})
				n := fs.Int("n", 0, "a number")
				if err := Parse(fs, args, 0); err != nil {
					return err
				}
				*ran = append(*ran, fmt.Sprint("flags ", *n))
				return nil
			}},
		},
	}
}

func TestMain(t *testing.T) {
	tests := []struct {
		args                   []string
		code                   int
		stdout, stderr, ranCmd string
	}{
		{args: nil, code: 2, stderr: "usage: prog <command>"},
		{args: []string{"nope"}, code: 2, stderr: `unknown command "nope"`},
		{args: []string{"help"}, code: 0, stdout: "  flags    parses flags"},
		{args: []string{"--help"}, code: 0, stdout: "usage: prog"},
		{args: []string{"version"}, code: 0, stdout: "prog dev (commit unknown)"},
		{args: []string{"ok", "a", "b"}, code: 0, ranCmd: "ok a b"},
		{args: []string{"fail"}, code: 1, stderr: "prog fail: broken"},
		{args: []string{"flags", "--n", "3"}, code: 0, ranCmd: "flags 3"},
		{args: []string{"flags", "--n", "x"}, code: 2, stderr: "usage: prog flags [--n N]"},
		{args: []string{"flags", "extra"}, code: 2, stderr: `unexpected arguments ["extra"]`},
		{args: []string{"flags", "-h"}, code: 0},
	}
	for _, tt := range tests {
		var ran []string
		var stdout, stderr bytes.Buffer
		p := testProgram(&ran)
		p.Stdout, p.Stderr = &stdout, &stderr
		code := p.Main(context.Background(), tt.args)
		if code != tt.code {
			t.Errorf("Main(%q) = %d, want %d (stderr %q)", tt.args, code, tt.code, stderr.String())
		}
		if !strings.Contains(stdout.String(), tt.stdout) {
			t.Errorf("Main(%q) stdout = %q, want it to contain %q", tt.args, stdout.String(), tt.stdout)
		}
		if !strings.Contains(stderr.String(), tt.stderr) {
			t.Errorf("Main(%q) stderr = %q, want it to contain %q", tt.args, stderr.String(), tt.stderr)
		}
		if tt.code == 2 && stdout.Len() != 0 {
			t.Errorf("Main(%q) wrote %q to stdout on a usage error; usage errors go to stderr", tt.args, stdout.String())
		}
		if got := strings.Join(ran, ";"); got != tt.ranCmd {
			t.Errorf("Main(%q) ran %q, want %q", tt.args, got, tt.ranCmd)
		}
	}
}
