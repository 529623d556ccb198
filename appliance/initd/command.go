package initd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/ote-edge/ote/appliance/pid1"
	"github.com/ote-edge/ote/cross/multicall"
)

// Main is `ote init [--root DIR] [--status-listen ADDR] [--cgroup-root DIR]`.
func Main(ctx context.Context, args []string) error {
	fs := multicall.FlagSet("init", os.Stderr)
	var cfg Config
	fs.StringVar(&cfg.Root, "root", "", "run as an ordinary process with every file under `DIR` (boot/, data/, run/)")
	fs.StringVar(&cfg.StatusListen, "status-listen", "", "status page `ADDR`, overriding config.yaml")
	fs.StringVar(&cfg.CgroupRoot, "cgroup-root", "", "cgroup v2 `DIR` for the services' cgroups")
	if err := multicall.Parse(fs, args, 0); err != nil {
		return err
	}
	cfg.Console = os.Stdout
	cfg.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	action, err := Run(ctx, cfg)
	if err != nil {
		return err
	}
	switch {
	case action == pid1.Exit:
		return nil
	case cfg.Root != "" && action == pid1.Reboot:
		// Outside PID 1 a reboot starts ote init afresh in this process.
		self, err := os.Executable()
		if err != nil {
			return err
		}
		fmt.Println("ote: restarting")
		return syscall.Exec(self, os.Args, os.Environ())
	case cfg.Root != "":
		return nil
	}
	return pid1.Finish(action)
}

// SignalMain is `ote reboot|poweroff [--root DIR]`: it asks the running
// ote init to shut down in order and then reboot or power off.
func SignalMain(sig syscall.Signal) func(ctx context.Context, args []string) error {
	return func(ctx context.Context, args []string) error {
		fs := multicall.FlagSet("signal", os.Stderr)
		root := fs.String("root", "", "the `DIR` ote init was started with, if any")
		if err := multicall.Parse(fs, args, 0); err != nil {
			return err
		}
		pid := 1
		if *root != "" {
			b, err := os.ReadFile(layout(*root).PIDFile())
			if err != nil {
				return fmt.Errorf("is ote init running under %s? %w", *root, err)
			}
			if pid, err = strconv.Atoi(strings.TrimSpace(string(b))); err != nil {
				return fmt.Errorf("bad pid file: %w", err)
			}
		}
		if err := syscall.Kill(pid, sig); err != nil {
			if errors.Is(err, syscall.ESRCH) {
				return fmt.Errorf("no ote init with pid %d", pid)
			}
			return fmt.Errorf("signal ote init (pid %d): %w", pid, err)
		}
		return nil
	}
}
