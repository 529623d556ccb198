package state

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/k3s-io/kine/pkg/drivers"
	"github.com/k3s-io/kine/pkg/drivers/generic"
	"github.com/k3s-io/kine/pkg/drivers/sqlite"
	"github.com/k3s-io/kine/pkg/server"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
)

// ServerConfig configures Serve.
type ServerConfig struct {
	DBPath string // the SQLite file, e.g. <data>/state.db
	Socket string // the unix socket to serve the etcd API on
	Log    *slog.Logger
	// CompactInterval is how often old revisions are removed; default 5m.
	CompactInterval time.Duration
}

// sqliteParams puts SQLite in WAL mode and syncs every commit: slower
// than kine's default synchronous=NORMAL, but a write acknowledged to a
// client is on disk when the power goes.
const sqliteParams = "_journal_mode=WAL&_synchronous=FULL&_busy_timeout=30000&_txlock=immediate"

// Serve runs kine on cfg.DBPath, serving on cfg.Socket, until ctx ends.
func Serve(ctx context.Context, cfg ServerConfig) error {
	if cfg.DBPath == "" || cfg.Socket == "" {
		return errors.New("state: database path and socket are required")
	}
	if cfg.CompactInterval == 0 {
		cfg.CompactInterval = 5 * time.Minute
	}
	for _, dir := range []string{filepath.Dir(cfg.DBPath), filepath.Dir(cfg.Socket)} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("state: %w", err)
		}
	}
	// A socket left by a killed predecessor would make listen fail.
	if err := os.Remove(cfg.Socket); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("state: remove stale socket: %w", err)
	}

	// kine's endpoint package would link every backend it has (MySQL,
	// Postgres, NATS, T4) into the box's binary; the box only needs
	// SQLite, so its driver and etcd server are put together here.
	var wg sync.WaitGroup
	kctx, cancel := context.WithCancel(context.Background())
	defer func() {
		cancel()
		wg.Wait()
	}()
	// The values are kine's own command-line defaults.
	_, backend, err := sqlite.New(kctx, &wg, &drivers.Config{
		Scheme:               "sqlite",
		DataSourceName:       cfg.DBPath + "?" + sqliteParams,
		ConnectionPoolConfig: generic.ConnectionPoolConfig{MaxIdle: 20, MaxIdleTime: 2 * time.Minute},
		CompactInterval:      cfg.CompactInterval,
		CompactTimeout:       5 * time.Second,
		CompactMinRetain:     1000,
		CompactBatchSize:     1000,
		PollBatchSize:        500,
		PollInterval:         time.Second,
	})
	if err != nil {
		return fmt.Errorf("state: open %s: %w", cfg.DBPath, err)
	}
	if err := backend.Start(kctx); err != nil {
		return fmt.Errorf("state: start kine on %s: %w", cfg.DBPath, err)
	}
	// etcd's own server defaults, as kine uses them.
	srv := grpc.NewServer(
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 2 * time.Hour, Timeout: 20 * time.Second}),
		grpc.MaxRecvMsgSize(1536<<10+512<<10),
		grpc.MaxSendMsgSize(math.MaxInt32),
	)
	server.New(backend, "unix", 5*time.Second, "3.6.11").Register(srv)
	ln, err := net.Listen("unix", cfg.Socket)
	if err != nil {
		return fmt.Errorf("state: %w", err)
	}
	if err := os.Chmod(cfg.Socket, 0o600); err != nil {
		ln.Close()
		return fmt.Errorf("state: %w", err)
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	if cfg.Log != nil {
		cfg.Log.Info("state served", "db", cfg.DBPath, "socket", cfg.Socket)
	}
	select {
	case err := <-serveErr:
		return fmt.Errorf("state: serve: %w", err)
	case <-ctx.Done():
	}
	stopped := make(chan struct{})
	go func() { srv.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		srv.Stop()
	}
	<-serveErr
	return nil
}
