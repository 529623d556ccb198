package component

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"time"

	"github.com/ote-edge/ote/appliance/backoff"
	"github.com/ote-edge/ote/appliance/config"
	"github.com/ote-edge/ote/appliance/state"
	"github.com/ote-edge/ote/cloud/tunnel"
	"github.com/ote-edge/ote/cloud/uplink"
	"github.com/ote-edge/ote/cross/buildinfo"
	"github.com/ote-edge/ote/cross/multicall"
)

// runController is the box's cluster controller: its uplink to the
// parent, with identity and desired state kept in the box's kine.
func runController(ctx context.Context, args []string, log *slog.Logger) error {
	fs := multicall.FlagSet("run controller", io.Discard)
	enroll := fs.String("enroll", "", "enroll.yaml on the boot partition")
	socket := fs.String("state", "", "unix socket of the state service")
	configFile := fs.String("config", "", "config.yaml on the boot partition, for its uplink settings")
	if err := multicall.Parse(fs, args, 0); err != nil {
		return err
	}
	// ote init has shown any error in the file already; the uplink runs
	// with its defaults then.
	conf, err := config.Load(*configFile)
	if err != nil {
		log.Warn("using the default uplink settings", "err", err)
	}
	st, err := state.Dial(*socket)
	if err != nil {
		return err
	}
	defer st.Close()
	// ote init creates the device record at first boot.
	bo := backoff.Backoff{Min: 200 * time.Millisecond, Max: 5 * time.Second}
	var dev state.Device
	for {
		if dev, _, err = state.Get(ctx, st, state.DeviceKey); err == nil {
			break
		}
		log.Info("waiting for the device record", "err", err)
		if bo.Wait(ctx) != nil {
			return nil
		}
	}
	return uplink.Run(ctx, uplink.Config{
		EnrollFile: *enroll, DeviceID: dev.ID, AgentVersion: buildinfo.Version(),
		Store: boxStore{st}, Log: log,
		LostAfter: conf.Uplink.LostAfter, FailoverAfter: conf.Uplink.FailoverAfter, ReturnEvery: conf.Uplink.ReturnEvery,
	})
}

// boxStore keeps the uplink's records in the local state.
type boxStore struct{ s *state.Store }

const (
	identityKey state.Key[uplink.Identity] = "uplink/identity"
	desiredKey  state.Key[tunnel.Desired]  = "uplink/desired"
)

func (b boxStore) Identity(ctx context.Context) (uplink.Identity, bool, error) {
	id, _, err := state.Get(ctx, b.s, identityKey)
	if errors.Is(err, state.ErrNotFound) {
		return id, false, nil
	}
	return id, err == nil, err
}

func (b boxStore) SaveIdentity(ctx context.Context, id uplink.Identity) error {
	_, err := state.Put(ctx, b.s, identityKey, id)
	return err
}

func (b boxStore) Desired(ctx context.Context) (*tunnel.Desired, error) {
	d, _, err := state.Get(ctx, b.s, desiredKey)
	if errors.Is(err, state.ErrNotFound) {
		return nil, nil
	}
	return &d, err
}

func (b boxStore) SaveDesired(ctx context.Context, d *tunnel.Desired) error {
	_, err := state.Put(ctx, b.s, desiredKey, *d)
	return err
}

func (b boxStore) Report(ctx context.Context, r uplink.Report) error {
	_, err := state.Put(ctx, b.s, state.UplinkKey, state.Uplink{
		Phase: r.Phase, Cluster: r.Cluster, Tags: r.Tags, Server: r.Server, Parent: r.Parent,
		Alternates: r.Alternates, RTTMillis: float64(r.RTT.Microseconds()) / 1000, Error: r.LastError,
		CertNotAfter: r.CertNotAfter, Since: r.Since, Revision: r.Revision,
	})
	return err
}
