package supervisor

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// ExitNoRestart is the exit status with which a service asks not to be
// restarted, e.g. after finding its configuration unusable.
const ExitNoRestart = 125

// Restart is a service's restart policy.
type Restart string

// Restart policies.
const (
	RestartAlways    Restart = "always"     // restart after every exit
	RestartOnFailure Restart = "on-failure" // restart after a non-zero exit or a signal
	RestartNever     Restart = "never"      // run once
)

// Service declares one supervised process.
type Service struct {
	Name string
	Argv []string // Argv[0] is a path or a name looked up in PATH
	Env  []string // added to the supervisor's environment
	Dir  string   // working directory; empty means the supervisor's
	// After lists the services that must be ready before this one starts.
	After []string
	// Ready tells when the service is ready; nil means as soon as it runs.
	Ready   Probe
	Restart Restart // empty means RestartAlways
	// MemoryMax and PidsMax limit the service's cgroup; zero means no limit.
	MemoryMax int64
	PidsMax   int64
	// StopGrace is how long SIGTERM has before SIGKILL; zero means the
	// supervisor's default.
	StopGrace time.Duration
}

func (s *Service) restartPolicy() Restart {
	if s.Restart == "" {
		return RestartAlways
	}
	return s.Restart
}

// order validates a service table and returns it in start order: every
// service after all of its dependencies.
func order(services []Service) ([]Service, error) {
	byName := make(map[string]*Service, len(services))
	var errs []error
	for i := range services {
		s := &services[i]
		switch {
		case s.Name == "" || strings.ContainsAny(s.Name, "/ \t\n"):
			errs = append(errs, fmt.Errorf("service %d: bad name %q", i, s.Name))
		case byName[s.Name] != nil:
			errs = append(errs, fmt.Errorf("service %q: declared twice", s.Name))
		case len(s.Argv) == 0:
			errs = append(errs, fmt.Errorf("service %q: empty argv", s.Name))
		}
		switch s.restartPolicy() {
		case RestartAlways, RestartOnFailure, RestartNever:
		default:
			errs = append(errs, fmt.Errorf("service %q: unknown restart policy %q", s.Name, s.Restart))
		}
		byName[s.Name] = s
	}
	for _, s := range services {
		for _, d := range s.After {
			if byName[d] == nil {
				errs = append(errs, fmt.Errorf("service %q: depends on unknown service %q", s.Name, d))
			}
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}

	const (
		unvisited = iota
		visiting
		done
	)
	mark := make(map[string]int, len(services))
	out := make([]Service, 0, len(services))
	var visit func(s *Service, path []string) error
	visit = func(s *Service, path []string) error {
		switch mark[s.Name] {
		case done:
			return nil
		case visiting:
			return fmt.Errorf("dependency cycle: %s", strings.Join(append(path, s.Name), " -> "))
		}
		mark[s.Name] = visiting
		for _, d := range s.After {
			if err := visit(byName[d], append(path, s.Name)); err != nil {
				return err
			}
		}
		mark[s.Name] = done
		out = append(out, *s)
		return nil
	}
	for i := range services {
		if err := visit(&services[i], nil); err != nil {
			return nil, err
		}
	}
	return out, nil
}
