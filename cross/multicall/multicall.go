// Package multicall dispatches the command line of an OTE binary to one of
// its subcommands, the way the binaries of Talos and k3s do: a table of
// commands, each with its own flags, plus built-in help and version.
//
// Usage errors (no command, unknown command, bad flags) print usage to
// stderr and exit with status 2; a command that fails exits with status 1.
package multicall

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/ote-edge/ote/cross/buildinfo"
)

// ErrUsage is returned by a command whose arguments are wrong. Main prints
// the command's usage and exits with status 2. Wrap it to add detail.
var ErrUsage = errors.New("usage error")

// Command is one subcommand of a program.
type Command struct {
	Name    string // as typed on the command line
	Args    string // synopsis of the arguments, e.g. "[--root DIR]"
	Summary string // one line for the program's usage
	// Run parses args (everything after the command name) and does the
	// work. It returns ErrUsage, possibly wrapped, for bad arguments.
	Run func(ctx context.Context, args []string) error
}

// Program is a multi-call binary: a name and its commands.
type Program struct {
	Name     string
	Summary  string
	Commands []Command
	Stdout   io.Writer // defaults to os.Stdout
	Stderr   io.Writer // defaults to os.Stderr
}

// Exit runs Main on the process's arguments with a context that ends on
// SIGINT or SIGTERM, and exits the process with Main's code. It is the
// whole body of an OTE binary's main function.
func (p *Program) Exit() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := p.Main(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}

// Main runs the command named by args[0] and returns the process exit code.
func (p *Program) Main(ctx context.Context, args []string) int {
	stdout, stderr := p.Stdout, p.Stderr
	if stdout == nil {
		stdout = os.Stdout
	}
	if stderr == nil {
		stderr = os.Stderr
	}
	if len(args) == 0 {
		p.usage(stderr)
		return 2
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		p.usage(stdout)
		return 0
	case "version", "--version":
		fmt.Fprintln(stdout, buildinfo.String(p.Name))
		return 0
	}
	cmd := p.lookup(args[0])
	if cmd == nil {
		fmt.Fprintf(stderr, "%s: unknown command %q\n\n", p.Name, args[0])
		p.usage(stderr)
		return 2
	}
	err := cmd.Run(ctx, args[1:])
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, ErrUsage):
		fmt.Fprintf(stderr, "%s %s: %v\nusage: %s %s %s\n", p.Name, cmd.Name, err, p.Name, cmd.Name, cmd.Args)
		return 2
	default:
		fmt.Fprintf(stderr, "%s %s: %v\n", p.Name, cmd.Name, err)
		return 1
	}
}

func (p *Program) lookup(name string) *Command {
	for i := range p.Commands {
		if p.Commands[i].Name == name {
			return &p.Commands[i]
		}
	}
	return nil
}

func (p *Program) usage(w io.Writer) {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s\n\nusage: %s <command> [arguments]\n\ncommands:\n", p.Name, p.Summary, p.Name)
	rows := append([]Command(nil), p.Commands...)
	rows = append(rows,
		Command{Name: "version", Summary: "print the version and git commit"},
		Command{Name: "help", Summary: "print this help"})
	width := 0
	for _, c := range rows {
		width = max(width, len(c.Name))
	}
	for _, c := range rows {
		fmt.Fprintf(&b, "  %-*s  %s\n", width, c.Name, c.Summary)
	}
	io.WriteString(w, b.String())
}

// FlagSet returns a flag set for a command that reports parse errors as
// ErrUsage instead of exiting, and prints flag help to w.
func FlagSet(name string, w io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(w)
	return fs
}

// Parse parses args into fs and wraps any error other than -h in ErrUsage.
// A command with no positional arguments should also reject leftovers,
// which Parse does when maxArgs is 0.
func Parse(fs *flag.FlagSet, args []string, maxArgs int) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", ErrUsage, err)
	}
	if maxArgs >= 0 && fs.NArg() > maxArgs {
		return fmt.Errorf("%w: unexpected arguments %q", ErrUsage, fs.Args())
	}
	return nil
}
