package serve

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/sirupsen/logrus"

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
	if err := multicall.Parse(fs, args, 0); err != nil {
		return err
	}
	if (cfg.DataDir == "") == (cfg.Kubeconfig == "") {
		return fmt.Errorf("%w: give exactly one of --data-dir and --kubeconfig", multicall.ErrUsage)
	}
	// kine logs through logrus; keep its per-start chatter out of the way.
	logrus.SetLevel(logrus.WarnLevel)
	cfg.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
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
