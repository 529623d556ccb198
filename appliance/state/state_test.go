package state

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// startServer runs a real kine on a SQLite file in dir and returns a store
// connected to it; stop ends the server and waits for it.
func startServer(t *testing.T, dir string) (store *Store, stop func()) {
	t.Helper()
	return startServerWith(t, ServerConfig{DBPath: filepath.Join(dir, "state.db"), Socket: filepath.Join(dir, "state.sock")})
}

func startServerWith(t *testing.T, cfg ServerConfig) (store *Store, stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, cfg) }()
	s, err := Dial(cfg.Socket)
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		s.Close()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}
	t.Cleanup(stop)
	return s, stop
}

func TestPutGetWatchAndPersist(t *testing.T) {
	dir := t.TempDir()
	s, stop := startServer(t, dir)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	if _, _, err := Get(ctx, s, DeviceKey); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get before any Put = %v, want ErrNotFound", err)
	}
	dev := Device{ID: "box-1", CreatedAt: time.Unix(1700000000, 0).UTC()}
	rev1, err := Put(ctx, s, DeviceKey, dev)
	if err != nil {
		t.Fatal(err)
	}
	got, rev, err := Get(ctx, s, DeviceKey)
	if err != nil || got != dev || rev != rev1 {
		t.Fatalf("Get = %+v, %d, %v; want %+v at revision %d", got, rev, err, dev, rev1)
	}

	updates := Watch(ctx, s, UplinkKey, rev1)
	want := Uplink{Phase: "connected", Cluster: "berlin-1"}
	rev2, err := Put(ctx, s, UplinkKey, want)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case u := <-updates:
		if u.Err != nil || u.Value.Cluster != want.Cluster || u.Revision != rev2 {
			t.Errorf("watch got %+v, want %+v at revision %d", u, want, rev2)
		}
	case <-ctx.Done():
		t.Fatal("no watch event for the uplink write")
	}
	if r, err := s.Revision(ctx); err != nil || r < rev2 {
		t.Errorf("Revision() = %d, %v; want at least %d", r, err, rev2)
	}

	// A restarted server on the same file has every record.
	stop()
	s2, _ := startServer(t, dir)
	got, _, err = Get(ctx, s2, DeviceKey)
	if err != nil || got != dev {
		t.Errorf("after restart Get = %+v, %v; want %+v", got, err, dev)
	}
}

func TestServeNeedsPaths(t *testing.T) {
	if err := Serve(context.Background(), ServerConfig{}); err == nil {
		t.Error("Serve with no paths succeeded, want an error")
	}
}

// Compaction drops old revisions, keeping the last 1000, so a record that
// is rewritten forever does not grow the file forever.
func TestCompactionBoundsHistory(t *testing.T) {
	dir := t.TempDir()
	s, _ := startServerWith(t, ServerConfig{
		DBPath: filepath.Join(dir, "state.db"), Socket: filepath.Join(dir, "state.sock"),
		CompactInterval: time.Second,
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const writes = 2000
	var first int64
	for i := range writes {
		rev, err := Put(ctx, s, ConfigKey, ConfigInfo{Hash: fmt.Sprint(i)})
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = rev
		}
	}
	deadline := time.Now().Add(time.Minute)
	for {
		_, err := s.cli.Get(ctx, prefix+string(ConfigKey), clientv3.WithRev(first))
		if err != nil && strings.Contains(err.Error(), "compacted") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("revision %d of %d writes still readable after a minute (err %v); compaction did not run", first, writes, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if got, _, err := Get(ctx, s, ConfigKey); err != nil || got.Hash != fmt.Sprint(writes-1) {
		t.Errorf("latest after compaction = %+v, %v; want hash %d", got, err, writes-1)
	}
}
