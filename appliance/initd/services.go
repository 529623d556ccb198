package initd

import (
	"fmt"
	"sort"

	"github.com/ote-edge/ote/appliance/config"
	"github.com/ote-edge/ote/appliance/supervisor"
)

// builtinServices is the box's process tree. Each component is the ote
// binary itself, re-executed as `ote run <component>`; adding one is an
// entry here and a case in appliance/component. The network is only the
// box's to configure when ote init is PID 1.
func builtinServices(p Paths, self string, asPID1 bool) []supervisor.Service {
	services := []supervisor.Service{
		{
			Name:      "state",
			Argv:      []string{self, "run", "state", "--db", p.StateDB(), "--socket", p.StateSocket()},
			Ready:     supervisor.SocketProbe{Path: p.StateSocket()},
			MemoryMax: 256 << 20,
		},
	}
	services = append(services, supervisor.Service{
		Name:      "controller",
		Argv:      []string{self, "run", "controller", "--enroll", p.EnrollFile(), "--state", p.StateSocket(), "--config", p.ConfigFile()},
		After:     []string{"state"},
		MemoryMax: 64 << 20,
	})
	if asPID1 {
		services = append(services, supervisor.Service{
			Name:      "network",
			Argv:      []string{self, "run", "network", "--config", p.ConfigFile(), "--resolv", "/run/resolv.conf"},
			MemoryMax: 64 << 20,
		})
	}
	return services
}

// services merges config.yaml's overrides and added services into the
// built-in table. Problems are returned as messages for the status page;
// the service concerned keeps its built-in settings.
func services(builtin []supervisor.Service, overrides map[string]config.Service) ([]supervisor.Service, []string) {
	var problems []string
	out := make([]supervisor.Service, 0, len(builtin)+len(overrides))
	known := map[string]bool{}
	for _, s := range builtin {
		known[s.Name] = true
		o, ok := overrides[s.Name]
		if !ok {
			out = append(out, s)
			continue
		}
		if o.Disabled {
			continue
		}
		if len(o.Argv) > 0 {
			problems = append(problems, fmt.Sprintf("config.yaml: services.%s: argv cannot replace a built-in service's command", s.Name))
		}
		s.Env = append(s.Env, o.Env...)
		if o.MemoryMax > 0 {
			s.MemoryMax = int64(o.MemoryMax)
		}
		if o.PidsMax > 0 {
			s.PidsMax = o.PidsMax
		}
		if o.Restart != "" {
			s.Restart = supervisor.Restart(o.Restart)
		}
		if o.StopGrace > 0 {
			s.StopGrace = o.StopGrace
		}
		out = append(out, s)
	}

	names := make([]string, 0, len(overrides))
	for name := range overrides {
		if !known[name] {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	for _, name := range names {
		o := overrides[name]
		if o.Disabled {
			continue
		}
		if len(o.Argv) == 0 {
			problems = append(problems, fmt.Sprintf("config.yaml: services.%s: no built-in service has this name; give argv to add one", name))
			continue
		}
		s := supervisor.Service{
			Name: name, Argv: o.Argv, Env: o.Env, After: o.After,
			Restart: supervisor.Restart(o.Restart), MemoryMax: int64(o.MemoryMax), PidsMax: o.PidsMax,
			StopGrace: o.StopGrace,
		}
		if p := o.Ready; p != nil {
			switch {
			case p.HTTP != "":
				s.Ready = supervisor.HTTPProbe{URL: p.HTTP}
			case p.Socket != "":
				s.Ready = supervisor.SocketProbe{Path: p.Socket}
			default:
				s.Ready = supervisor.ExecProbe{Argv: p.Exec}
			}
		}
		out = append(out, s)
	}
	return out, problems
}
