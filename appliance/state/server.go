package state

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/k3s-io/kine/pkg/drivers/generic"
	"github.com/k3s-io/kine/pkg/endpoint"
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

	var wg sync.WaitGroup
	kctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The values are kine's own command-line defaults; embedding through
	// endpoint.Listen leaves them zero otherwise.
	etcd, err := endpoint.Listen(kctx, endpoint.Config{
		WaitGroup:            &wg,
		Listener:             "unix://" + cfg.Socket,
		Endpoint:             "sqlite://" + cfg.DBPath + "?" + sqliteParams,
		ConnectionPoolConfig: generic.ConnectionPoolConfig{MaxIdle: 20, MaxIdleTime: 2 * time.Minute},
		NotifyInterval:       5 * time.Second,
		EmulatedETCDVersion:  "3.6.11",
		CompactInterval:      cfg.CompactInterval,
		CompactTimeout:       5 * time.Second,
		CompactMinRetain:     1000,
		CompactBatchSize:     1000,
		PollBatchSize:        500,
		PollInterval:         time.Second,
	})
	if err != nil {
		return fmt.Errorf("state: start kine on %s: %w", cfg.DBPath, err)
	}
	if cfg.Log != nil {
		cfg.Log.Info("state served", "db", cfg.DBPath, "endpoint", etcd.Endpoints)
	}
	<-ctx.Done()
	cancel()
	wg.Wait()
	return nil
}
