package initd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ote-edge/ote/appliance/backoff"
	"github.com/ote-edge/ote/appliance/config"
	"github.com/ote-edge/ote/appliance/pid1"
	"github.com/ote-edge/ote/appliance/state"
	"github.com/ote-edge/ote/appliance/statuspage"
	"github.com/ote-edge/ote/appliance/supervisor"
)

// Config configures Run.
type Config struct {
	// Root, when set, runs ote init as an ordinary process with its files
	// under Root; empty means the box's own layout, as PID 1.
	Root string
	// StatusListen overrides config.yaml's status.listen.
	StatusListen string
	// Self is the ote binary the services re-execute; default the running one.
	Self string
	// CgroupRoot is a cgroup v2 directory for the services' cgroups;
	// default /sys/fs/cgroup as PID 1 and none otherwise.
	CgroupRoot string
	Log        *slog.Logger
	Console    io.Writer // service output and messages for people
}

// Run brings the box up, supervises it until a signal or a request from
// the status page, stops the tree in order, and returns what should happen
// next: Exit, or a reboot, power-off or halt for the caller to carry out.
func Run(ctx context.Context, cfg Config) (pid1.Action, error) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Console == nil {
		cfg.Console = io.Discard
	}
	asPID1 := cfg.Root == ""
	if asPID1 && !pid1.IsPID1() {
		return pid1.Exit, errors.New("ote init runs as PID 1 on a box; elsewhere use --root DIR")
	}
	paths := layout(cfg.Root)
	say := func(format string, args ...any) { fmt.Fprintf(cfg.Console, "ote: "+format+"\n", args...) }

	if asPID1 {
		earlySetup(cfg.Log) // before anything reads /proc
	}
	if cfg.Self == "" {
		self, err := os.Executable()
		if err != nil {
			return pid1.Exit, fmt.Errorf("find own binary: %w", err)
		}
		cfg.Self = self
	}
	for _, d := range []string{paths.Data, paths.Run, filepath.Dir(paths.ConfigFile())} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return pid1.Exit, fmt.Errorf("create %s: %w", d, err)
		}
	}
	if err := os.WriteFile(paths.PIDFile(), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return pid1.Exit, err
	}
	defer os.Remove(paths.PIDFile())

	// Configuration: problems are shown, never fatal.
	conf, err := config.Load(paths.ConfigFile())
	var problems []string
	if err != nil {
		problems = append(problems, err.Error())
	}
	if _, err := config.LoadEnroll(paths.EnrollFile()); err != nil && !errors.Is(err, config.ErrNoEnroll) {
		problems = append(problems, err.Error())
	}
	listen := conf.Status.Listen
	if cfg.StatusListen != "" {
		listen = cfg.StatusListen
	}
	hostname := conf.Hostname
	if asPID1 && hostname != "" {
		if err := pid1.SetHostname(hostname); err != nil {
			problems = append(problems, err.Error())
		}
	}

	// The process tree.
	reaper := supervisor.NewReaper(cfg.Log)
	if !asPID1 {
		// Orphans of our services come to us, not to the system's init.
		if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
			return pid1.Exit, fmt.Errorf("become subreaper: %w", err)
		}
	}
	builtin := builtinServices(paths, cfg.Self, asPID1)
	table, more := services(builtin, conf.Services)
	problems = append(problems, more...)
	supCfg := supervisor.Config{
		Runner:  &supervisor.ExecRunner{Reaper: reaper},
		Log:     cfg.Log,
		Console: cfg.Console,
		Cgroups: openCgroups(asPID1, cfg.CgroupRoot, say),
	}
	supCfg.Services = table
	sup, err := supervisor.New(supCfg)
	if err != nil {
		problems = append(problems, "config.yaml: services: "+err.Error()+"; running the built-in services only")
		supCfg.Services = builtin
		if sup, err = supervisor.New(supCfg); err != nil {
			return pid1.Exit, err
		}
	}
	for _, p := range problems {
		say("configuration problem: %s", p)
	}

	store, err := state.Dial(paths.StateSocket())
	if err != nil {
		return pid1.Exit, err
	}
	defer store.Close()
	id := &identity{configHash: conf.Status.PasswordHash}

	actions := make(chan pid1.Action, 1)
	request := func(a pid1.Action) {
		select {
		case actions <- a:
		default: // one is already under way
		}
	}
	page, err := statuspage.New(statuspage.Config{
		Listen:       listen,
		Log:          cfg.Log,
		Services:     sup,
		Store:        store,
		StateDB:      paths.StateDB(),
		DataDir:      paths.Data,
		Hostname:     hostname,
		ConfigErrors: problems,
		PasswordHash: id.passwordHash,
		Reboot:       func() { request(pid1.Reboot) },
	})
	if err != nil {
		return pid1.Exit, err
	}

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGUSR1, syscall.SIGUSR2)
	defer signal.Stop(sigs)

	reaperCtx, stopReaper := context.WithCancel(context.Background())
	var reaping sync.WaitGroup
	reaping.Go(func() { reaper.Run(reaperCtx) })
	defer func() {
		stopReaper()
		reaping.Wait()
	}()

	treeCtx, stopTree := context.WithCancel(context.Background())
	var tree sync.WaitGroup
	tree.Go(func() { sup.Run(treeCtx) })
	tree.Go(func() { servePage(treeCtx, page, cfg.Log) })
	tree.Go(func() {
		select {
		case <-sup.Ready("state"):
		case <-treeCtx.Done():
			return
		}
		dev := firstBoot(treeCtx, store, id, conf, problems, cfg.Log, say)
		if asPID1 && hostname == "" && dev.ID != "" {
			// A box without a configured name gets a stable one.
			if err := pid1.SetHostname("ote-" + dev.ID[:8]); err != nil {
				cfg.Log.Error("hostname", "err", err)
			}
		}
	})
	say("up; status page on %s", listen)

	var action pid1.Action
	select {
	case <-ctx.Done():
		action = pid1.Exit
	case a := <-actions:
		action = a
	case sig := <-sigs:
		action = signalAction(sig.(syscall.Signal), asPID1)
	}
	say("shutting down (%s)", action)
	stopTree()
	tree.Wait()
	say("all services stopped")
	return action, nil
}

// signalAction maps a signal to what it asks for, after busybox init: as
// PID 1 SIGTERM and SIGINT reboot, SIGUSR2 powers off, SIGUSR1 halts.
// Elsewhere every signal just stops the tree.
func signalAction(sig syscall.Signal, asPID1 bool) pid1.Action {
	if !asPID1 {
		return pid1.Exit
	}
	switch sig {
	case syscall.SIGUSR2:
		return pid1.PowerOff
	case syscall.SIGUSR1:
		return pid1.Halt
	}
	return pid1.Reboot
}

// earlySetup does the PID-1 duties that come before any service. Each
// failure is logged: a box with a missing mount still runs what it can.
func earlySetup(log *slog.Logger) {
	if err := pid1.MountEarly(); err != nil {
		log.Error("early mounts", "err", err)
	}
	mods, err := pid1.ReadModuleList(pid1.ModuleList)
	if err == nil {
		err = pid1.LoadModules(mods)
	}
	if err != nil {
		log.Error("kernel modules", "err", err)
	}
	if err := pid1.LoopbackUp(); err != nil {
		log.Error("loopback", "err", err)
	}
}

func openCgroups(asPID1 bool, root string, say func(string, ...any)) *supervisor.Cgroups {
	if root == "" && asPID1 {
		root = "/sys/fs/cgroup"
	}
	if root == "" {
		say("cgroups: off (no --cgroup-root outside PID 1); services run without memory and pid limits")
		return nil
	}
	cg, err := supervisor.OpenCgroups(root)
	if err != nil {
		say("cgroups: off (%v); services run without memory and pid limits", err)
		return nil
	}
	return cg
}

// servePage keeps the status page up, retrying when its port is taken.
func servePage(ctx context.Context, page *statuspage.Server, log *slog.Logger) {
	bo := backoff.Backoff{Min: time.Second, Max: 30 * time.Second, Jitter: 0.2}
	for {
		err := page.Run(ctx)
		if ctx.Err() != nil {
			return
		}
		log.Error("status page stopped; retrying", "err", err)
		if bo.Wait(ctx) != nil {
			return
		}
	}
}
