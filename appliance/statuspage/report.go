package statuspage

import (
	"context"
	"os"
	"time"

	"github.com/ote-edge/ote/appliance/state"
	"github.com/ote-edge/ote/appliance/supervisor"
)

// Report is everything the page shows, and the JSON of /api/v1/status.
type Report struct {
	Generated    time.Time       `json:"generated"`
	Device       Device          `json:"device"`
	Services     []ServiceReport `json:"services"`
	State        StateReport     `json:"state"`
	Uplink       state.Uplink    `json:"uplink"`
	ConfigErrors []string        `json:"configErrors"`
}

// ServiceReport is a service's status with its last log lines.
type ServiceReport struct {
	supervisor.Status
	Log []supervisor.Line `json:"log"`
}

// StateReport describes the local state database.
type StateReport struct {
	File      string `json:"file"`
	SizeBytes int64  `json:"sizeBytes"`
	Revision  int64  `json:"revision"`
	Error     string `json:"error,omitempty"`
}

// logLinesInReport is how many recent lines each service shows.
const logLinesInReport = 5

func (s *Server) report(ctx context.Context) Report {
	r := Report{Generated: time.Now().UTC(), Device: readDevice(s.cfg.Hostname, s.cfg.DataDir), ConfigErrors: s.cfg.ConfigErrors}
	if r.ConfigErrors == nil {
		r.ConfigErrors = []string{}
	}
	for _, st := range s.cfg.Services.Status() {
		sr := ServiceReport{Status: st, Log: []supervisor.Line{}}
		if ring, err := s.cfg.Services.Logs(st.Name); err == nil {
			sr.Log = append(sr.Log, ring.Tail(logLinesInReport)...)
		}
		r.Services = append(r.Services, sr)
	}

	r.State.File = s.cfg.StateDB
	for _, f := range []string{s.cfg.StateDB, s.cfg.StateDB + "-wal"} {
		if fi, err := os.Stat(f); err == nil {
			r.State.SizeBytes += fi.Size()
		}
	}
	r.Uplink.Phase = "not enrolled"
	if s.cfg.Store == nil {
		r.State.Error = "state service not connected"
		return r
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	rev, err := s.cfg.Store.Revision(ctx)
	if err != nil {
		r.State.Error = err.Error()
		return r
	}
	r.State.Revision = rev
	if u, _, err := state.Get(ctx, s.cfg.Store, state.UplinkKey); err == nil {
		r.Uplink = u
	}
	return r
}
