package state

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// prefix keeps the appliance's records apart from the local Kubernetes'
// keys (/registry/...) in the same kine.
const prefix = "/ote/"

// Key names one record of type T in the store.
type Key[T any] string

// Store is a typed client of the state service.
type Store struct {
	cli *clientv3.Client
}

// Dial connects to the state service's unix socket. It does not wait for
// the service; the first request does, until ctx ends.
func Dial(socket string) (*Store, error) {
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{"unix://" + socket},
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		return nil, fmt.Errorf("dial state at %s: %w", socket, err)
	}
	return &Store{cli: cli}, nil
}

// Close closes the connection.
func (s *Store) Close() error { return s.cli.Close() }

// ErrNotFound is returned by Get for a key that has no record.
var ErrNotFound = errors.New("not found")

// Get reads the record at k and the revision it was last written at.
func Get[T any](ctx context.Context, s *Store, k Key[T]) (v T, rev int64, err error) {
	resp, err := s.cli.Get(ctx, prefix+string(k))
	if err != nil {
		return v, 0, fmt.Errorf("get %s: %w", k, err)
	}
	if len(resp.Kvs) == 0 {
		return v, 0, fmt.Errorf("get %s: %w", k, ErrNotFound)
	}
	if err := json.Unmarshal(resp.Kvs[0].Value, &v); err != nil {
		return v, 0, fmt.Errorf("decode %s: %w", k, err)
	}
	return v, resp.Kvs[0].ModRevision, nil
}

// Put writes v at k and returns the store's revision after the write. The
// write is durable when Put returns.
func Put[T any](ctx context.Context, s *Store, k Key[T], v T) (int64, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return 0, fmt.Errorf("encode %s: %w", k, err)
	}
	resp, err := s.cli.Put(ctx, prefix+string(k), string(b))
	if err != nil {
		return 0, fmt.Errorf("put %s: %w", k, err)
	}
	return resp.Header.Revision, nil
}

// Update is one new value of a watched record.
type Update[T any] struct {
	Value    T
	Revision int64
	Err      error // a record that did not decode
}

// Watch sends every write to k after revision since (0: from now) until
// ctx ends, then closes the channel.
func Watch[T any](ctx context.Context, s *Store, k Key[T], since int64) <-chan Update[T] {
	opts := []clientv3.OpOption{}
	if since > 0 {
		opts = append(opts, clientv3.WithRev(since+1))
	}
	wch := s.cli.Watch(clientv3.WithRequireLeader(ctx), prefix+string(k), opts...)
	out := make(chan Update[T])
	go func() {
		defer close(out)
		for resp := range wch {
			for _, ev := range resp.Events {
				if ev.Type != clientv3.EventTypePut {
					continue
				}
				var u Update[T]
				u.Revision = ev.Kv.ModRevision
				if err := json.Unmarshal(ev.Kv.Value, &u.Value); err != nil {
					u.Err = fmt.Errorf("decode %s: %w", k, err)
				}
				select {
				case out <- u:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out
}

// Revision is the store's current revision.
func (s *Store) Revision(ctx context.Context) (int64, error) {
	resp, err := s.cli.Get(ctx, prefix, clientv3.WithCountOnly())
	if err != nil {
		return 0, fmt.Errorf("revision: %w", err)
	}
	return resp.Header.Revision, nil
}
