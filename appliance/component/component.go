// Package component is `ote run <component>`: the long-running parts of
// the box, each run by the supervisor as the ote binary re-executed with
// its name. A component logs to stderr, which the supervisor keeps.
package component

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strings"

	"github.com/sirupsen/logrus"

	"github.com/ote-edge/ote/appliance/config"
	"github.com/ote-edge/ote/appliance/netconf"
	"github.com/ote-edge/ote/appliance/state"
	"github.com/ote-edge/ote/cross/multicall"
)

// components maps names to their entry points.
func components() map[string]func(ctx context.Context, args []string, log *slog.Logger) error {
	return map[string]func(ctx context.Context, args []string, log *slog.Logger) error{
		"state":      runState,
		"network":    runNetwork,
		"controller": runController,
	}
}

// Main runs the component named by args[0].
func Main(ctx context.Context, args []string) error {
	table := components()
	names := make([]string, 0, len(table))
	for n := range table {
		names = append(names, n)
	}
	sort.Strings(names)
	if len(args) == 0 {
		return fmt.Errorf("%w: name a component: %s", multicall.ErrUsage, strings.Join(names, ", "))
	}
	run, ok := table[args[0]]
	if !ok {
		return fmt.Errorf("%w: unknown component %q (have %s)", multicall.ErrUsage, args[0], strings.Join(names, ", "))
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("component", args[0])
	return run(ctx, args[1:], log)
}

func runState(ctx context.Context, args []string, log *slog.Logger) error {
	fs := multicall.FlagSet("run state", io.Discard)
	var cfg state.ServerConfig
	fs.StringVar(&cfg.DBPath, "db", "", "SQLite file of the local state")
	fs.StringVar(&cfg.Socket, "socket", "", "unix socket to serve the etcd API on")
	if err := multicall.Parse(fs, args, 0); err != nil {
		return err
	}
	cfg.Log = log
	// kine logs through logrus; in this process it is kine's own, so
	// quiet its per-request chatter.
	logrus.SetLevel(logrus.WarnLevel)
	return state.Serve(ctx, cfg)
}

func runNetwork(ctx context.Context, args []string, log *slog.Logger) error {
	fs := multicall.FlagSet("run network", io.Discard)
	configFile := fs.String("config", "", "config.yaml whose network section to apply")
	cfg := netconf.Config{Log: log}
	fs.StringVar(&cfg.ResolvConf, "resolv", "/run/resolv.conf", "resolv.conf to write")
	fs.StringVar(&cfg.Hostname, "hostname", "", "hostname to send with DHCP requests")
	if err := multicall.Parse(fs, args, 0); err != nil {
		return err
	}
	// ote init has shown any error in the file already; the network
	// comes up with the defaults (DHCP) then.
	conf, err := config.Load(*configFile)
	if err != nil {
		log.Warn("using the default network settings", "err", err)
	}
	cfg.Network = conf.Network
	if cfg.Hostname == "" {
		cfg.Hostname = conf.Hostname
	}
	return netconf.Run(ctx, cfg)
}
