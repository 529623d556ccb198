package serve

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"
	"time"

	"github.com/sirupsen/logrus"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/ote-edge/ote/cloud/gcpace"
	"github.com/ote-edge/ote/cloud/shard"
	"github.com/ote-edge/ote/cloud/tunnel"
	"github.com/ote-edge/ote/cross/multicall"
)

// Main is `ote-cloud serve`.
func Main(ctx context.Context, args []string) error {
	fs := multicall.FlagSet("serve", os.Stderr)
	var cfg Config
	fs.StringVar(&cfg.DataDir, "data-dir", "", "`DIR` for the embedded control plane (kine, certificates, kubeconfig)")
	fs.StringVar(&cfg.Kubeconfig, "kubeconfig", "", "use the cluster in `FILE` instead of an embedded API server")
	fs.StringVar(&cfg.KubeBinary, "kube-binary", "", "the kube multi-call `PATH` (default: next to ote-cloud, or on PATH)")
	fs.StringVar(&cfg.APIListen, "api-listen", "127.0.0.1:6443", "`ADDR` of the embedded Kubernetes API")
	fs.StringVar(&cfg.Listen, "listen", ":7443", "UDP `ADDR` of the QUIC tunnel for children")
	fs.StringVar(&cfg.Name, "name", "root", "this level's `NAME`, given to children as their parent")
	fs.DurationVar(&cfg.CertValidity, "cert-validity", 90*24*time.Hour, "how long the identities of enrolled clusters last; they renew at 2/3 of it")
	fs.StringVar(&cfg.EnrollFile, "enroll-file", "", "join a higher level as a lower level of its tree, with the enroll.yaml in `FILE` (a token made with --level)")
	fs.StringVar(&cfg.Parent, "parent", "", "`HOST:PORT` of the higher level's tunnel (default: the server in --enroll-file)")
	fs.StringVar(&cfg.Advertise, "advertise", "", "`HOST:PORT` where this level's tunnel is reached, for other levels' children (default: --listen when it names a host)")
	fs.DurationVar(&cfg.LostAfter, "lost-after", tunnel.DefaultLostAfter, "how long this level's parent may stay silent before it is taken for lost (a parent that stops or restarts is noticed at once)")
	fs.DurationVar(&cfg.FailoverAfter, "failover-after", 2*time.Second, "how long this level tries each alternate parent when its own is lost")
	fs.DurationVar(&cfg.ReturnEvery, "return-every", 10*time.Second, "how often this level, on an alternate parent, looks for its own")
	fs.IntVar(&cfg.MaxHandshakes, "max-handshakes", tunnel.DefaultMaxHandshakes, "how many children's tunnel handshakes may be in progress at once; more are refused, and those children try again after their backoff")
	fs.DurationVar(&cfg.PingChildren, "ping-children", tunnel.ParentKeepAlive, "how often this level pings each child, each at a time of its own in that period, so that the child need not (0: never; the children ping); a child pings at half its lostAfter, later than the default for a box's default of 30s: raise it for children with a longer lostAfter, to spare metered links")
	fs.IntVar(&cfg.TunnelShards, "tunnel-shards", 1, fmt.Sprintf("hold the children's tunnels in `N` processes (2 to %d) that share the tunnel's UDP port, each with a heap and garbage collections of its own; this process keeps the level's state and serves every child through them (Linux)", shard.MaxShards))
	var shardMemoryLimit memoryLimitFlag
	fs.Var(&shardMemoryLimit, "shard-memory-limit", "with --tunnel-shards, as --memory-limit for each shard's process; shard i's bound is SIZE less i/(4N) of it, so that shards that grow alike do not collect at once")
	fs.IntVar(&cfg.ShardNice, "shard-nice", shard.DefaultNice, "with --tunnel-shards, run the shards at this process's niceness plus `N` (-20 to 19): below 0, ahead of it and of the API server, whose bursts of work would otherwise leave the shards' sockets unread and children's packets dropped; lowering it needs CAP_SYS_NICE, without which the shards run at this process's")
	var memoryLimit memoryLimitFlag
	fs.Var(&memoryLimit, "memory-limit", "collect garbage by this process's memory bound `SIZE` (8Gi, 9G, or bytes), not every two minutes and at each doubling of the heap: for a controller whose heap is mostly its children's long-lived tunnels (GOGC=off with GOMEMLIMIT=SIZE, for this process alone, not the API server it starts, and each collection started half way from the live heap to the bound's heap goal; default: the Go runtime's own)")
	var apiserverMemoryLimit memoryLimitFlag
	fs.Var(&apiserverMemoryLimit, "apiserver-memory-limit", "with --data-dir, run the embedded API server with GOGC=off and GOMEMLIMIT=`SIZE`, collecting by that bound: its live heap is several hundred MB whatever the number of children, and by default it collects each time the heap doubles, every few seconds while children connect, each time on every core for seconds; its resident set grows towards the bound (default: the Go runtime's own)")
	fs.StringVar(&cfg.ProfilingListen, "profiling-listen", "", "serve Go's pprof profiles over HTTP on `ADDR`, and tunnel shard i's on the port i+1 above it (off by default; keep it on loopback)")
	if err := multicall.Parse(fs, args, 0); err != nil {
		return err
	}
	if (cfg.DataDir == "") == (cfg.Kubeconfig == "") {
		return fmt.Errorf("%w: give exactly one of --data-dir and --kubeconfig", multicall.ErrUsage)
	}
	if cfg.LostAfter < time.Second {
		return fmt.Errorf("%w: --lost-after %v is too short: give at least 1s", multicall.ErrUsage, cfg.LostAfter)
	}
	if cfg.MaxHandshakes < 1 {
		return fmt.Errorf("%w: --max-handshakes %d: give at least 1", multicall.ErrUsage, cfg.MaxHandshakes)
	}
	switch {
	case cfg.PingChildren < 0:
		return fmt.Errorf("%w: --ping-children %v: give a positive duration, or 0 for never", multicall.ErrUsage, cfg.PingChildren)
	case cfg.PingChildren == 0:
		cfg.PingChildren = -1 // never
	}
	if cfg.TunnelShards < 1 || cfg.TunnelShards > shard.MaxShards {
		return fmt.Errorf("%w: --tunnel-shards %d: give 1 to %d", multicall.ErrUsage, cfg.TunnelShards, shard.MaxShards)
	}
	if shardMemoryLimit > 0 && cfg.TunnelShards < 2 {
		return fmt.Errorf("%w: --shard-memory-limit needs --tunnel-shards of 2 or more", multicall.ErrUsage)
	}
	cfg.ShardMemoryLimit = int64(shardMemoryLimit)
	if cfg.ShardNice < -20 || cfg.ShardNice > 19 {
		return fmt.Errorf("%w: --shard-nice %d: give -20 to 19", multicall.ErrUsage, cfg.ShardNice)
	}
	if apiserverMemoryLimit > 0 && cfg.DataDir == "" {
		return fmt.Errorf("%w: --apiserver-memory-limit needs --data-dir: with --kubeconfig the API server is not this process's", multicall.ErrUsage)
	}
	cfg.APIServerMemoryLimit = int64(apiserverMemoryLimit)
	if cfg.FailoverAfter <= 0 || cfg.ReturnEvery <= 0 {
		return fmt.Errorf("%w: --failover-after and --return-every must be positive", multicall.ErrUsage)
	}
	if cfg.Parent != "" && cfg.EnrollFile == "" {
		return fmt.Errorf("%w: --parent needs --enroll-file with a token for that level", multicall.ErrUsage)
	}
	if memoryLimit > 0 {
		debug.SetGCPercent(-1)
		debug.SetMemoryLimit(int64(memoryLimit))
	}
	// kine logs through logrus; keep its per-start chatter out of the way.
	logrus.SetLevel(logrus.WarnLevel)
	cfg.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if memoryLimit > 0 {
		// Collections started half way to the bound (package gcpace).
		pctx, stopPacing := context.WithCancel(ctx)
		defer stopPacing()
		go gcpace.Run(pctx, time.Second, cfg.Log)
	}
	cfg.Console = quietInfo{os.Stderr}
	cfg.Ready = func(kubeconfig, tunnel string) {
		fmt.Printf("ote-cloud: tunnel on udp %s\n", tunnel)
		fmt.Printf("ote-cloud: serving; kubeconfig: %s\n", kubeconfig)
		fmt.Printf("ote-cloud: try: kubectl --kubeconfig %s get edgeclusters\n", kubeconfig)
	}
	return Run(ctx, cfg)
}

// quietInfo drops the API server's klog info lines (those starting with
// "I" after the service prefix) on their way to the console; warnings,
// errors and the supervisor's own lines pass.
type quietInfo struct{ w io.Writer }

func (q quietInfo) Write(p []byte) (int, error) {
	if bytes.HasPrefix(p, []byte("apiserver: I")) {
		return len(p), nil
	}
	return q.w.Write(p)
}

// minMemoryLimit is the smallest --memory-limit taken: a size written
// without its unit is bytes, and a bound of a few bytes or KiB would have
// the runtime collect without end.
const minMemoryLimit = 256 << 20

// memoryLimitFlag is --memory-limit, a size in bytes written as a
// Kubernetes quantity (8Gi, 9G, 512Mi or plain bytes); zero is unset.
type memoryLimitFlag int64

func (m *memoryLimitFlag) String() string {
	if *m == 0 {
		return ""
	}
	return resource.NewQuantity(int64(*m), resource.BinarySI).String()
}

func (m *memoryLimitFlag) Set(s string) error {
	q, err := resource.ParseQuantity(s)
	if err != nil {
		return fmt.Errorf("not a size: give bytes or a quantity such as 8Gi")
	}
	v, ok := q.AsInt64()
	switch {
	case !ok:
		return fmt.Errorf("%s is more bytes than a 64-bit count holds", s)
	case v < minMemoryLimit:
		return fmt.Errorf("%s is below the smallest bound taken, %s (a size without a unit is bytes)", s, resource.NewQuantity(minMemoryLimit, resource.BinarySI))
	}
	*m = memoryLimitFlag(v)
	return nil
}
