package initd

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/ote-edge/ote/appliance/backoff"
	"github.com/ote-edge/ote/appliance/config"
	"github.com/ote-edge/ote/appliance/state"
)

// identity holds the device password's hash: config.yaml's when it sets
// one, else the one generated at first boot and kept in state.
type identity struct {
	configHash string
	mu         sync.Mutex
	stateHash  string
}

func (id *identity) passwordHash() string {
	if id.configHash != "" {
		return id.configHash
	}
	id.mu.Lock()
	defer id.mu.Unlock()
	return id.stateHash
}

// firstBoot makes sure the device record exists (creating the identity
// and, without a configured password, a random device password that is
// printed once on the console), and records the configuration booted
// with. It retries until the state service answers or ctx ends.
func firstBoot(ctx context.Context, store *state.Store, id *identity, conf config.Config, problems []string, log *slog.Logger, say func(string, ...any)) state.Device {
	bo := backoff.Backoff{Min: 200 * time.Millisecond, Max: 10 * time.Second, Jitter: 0.2}
	for {
		dev, err := ensureDevice(ctx, store, id, say)
		if err == nil {
			err = recordConfig(ctx, store, conf, problems)
		}
		if err == nil {
			return dev
		}
		log.Warn("first boot: state not ready", "err", err)
		if bo.Wait(ctx) != nil {
			return state.Device{}
		}
	}
}

func ensureDevice(ctx context.Context, store *state.Store, id *identity, say func(string, ...any)) (state.Device, error) {
	dev, _, err := state.Get(ctx, store, state.DeviceKey)
	switch {
	case errors.Is(err, state.ErrNotFound):
		dev = state.Device{ID: randomHex(8), CreatedAt: time.Now().UTC()}
	case err != nil:
		return dev, err
	}
	var password string
	if dev.PasswordHash == "" && id.configHash == "" {
		password = rand.Text()[:16]
		h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.DefaultCost)
		if err != nil {
			return dev, err
		}
		dev.PasswordHash = string(h)
	}
	if password != "" || errors.Is(err, state.ErrNotFound) {
		if _, err := state.Put(ctx, store, state.DeviceKey, dev); err != nil {
			return dev, err
		}
	}
	if password != "" {
		say("device %s: generated device password: %s", dev.ID, password)
		say("(set status.passwordHash in ote/config.yaml on the boot partition to choose your own)")
	}
	id.mu.Lock()
	id.stateHash = dev.PasswordHash
	id.mu.Unlock()
	return dev, nil
}

func recordConfig(ctx context.Context, store *state.Store, conf config.Config, problems []string) error {
	sum := sha256.Sum256(fmt.Appendf(nil, "%+v", conf))
	_, err := state.Put(ctx, store, state.ConfigKey, state.ConfigInfo{
		Hash: hex.EncodeToString(sum[:]), Errors: problems, Applied: time.Now().UTC(),
	})
	return err
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
