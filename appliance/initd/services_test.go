package initd

import (
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ote-edge/ote/appliance/config"
	"github.com/ote-edge/ote/appliance/supervisor"
)

func TestServicesMergesOverrides(t *testing.T) {
	builtin := builtinServices(layout("/r"), "/bin/ote", false)
	got, problems := services(builtin, map[string]config.Service{
		"state":  {MemoryMax: 64 << 20, Env: []string{"A=1"}, Restart: "on-failure", StopGrace: 3 * time.Second},
		"mine":   {Argv: []string{"/bin/mine"}, After: []string{"state"}, Ready: &config.Probe{Socket: "/run/mine.sock"}},
		"ghost":  {MemoryMax: 1},
		"hidden": {Argv: []string{"/bin/x"}, Disabled: true},
	})
	if len(got) != 3 || got[1].Name != "controller" {
		t.Fatalf("services = %+v, want state, controller and mine", got)
	}
	st := got[0]
	if st.Name != "state" || st.MemoryMax != 64<<20 || st.Restart != supervisor.RestartOnFailure || st.StopGrace != 3*time.Second || st.Env[len(st.Env)-1] != "A=1" {
		t.Errorf("state = %+v, want the overrides applied", st)
	}
	if st.Argv[0] != "/bin/ote" || st.Argv[1] != "run" || st.Argv[2] != "state" {
		t.Errorf("state argv = %q, want the ote binary re-executed", st.Argv)
	}
	mine := got[2]
	if mine.Name != "mine" || mine.After[0] != "state" || mine.Ready != (supervisor.SocketProbe{Path: "/run/mine.sock"}) {
		t.Errorf("mine = %+v", mine)
	}
	if len(problems) != 1 || !strings.Contains(problems[0], "services.ghost: no built-in service") {
		t.Errorf("problems = %q, want one about ghost", problems)
	}

	got, problems = services(builtin, map[string]config.Service{"state": {Disabled: true, Argv: []string{"/evil"}}})
	if len(got) != 1 || got[0].Name != "controller" || len(problems) != 0 {
		t.Errorf("disabling state = %+v, %q; want only the controller and no problems", got, problems)
	}
	_, problems = services(builtin, map[string]config.Service{"state": {Argv: []string{"/evil"}}})
	if len(problems) != 1 || !strings.Contains(problems[0], "argv cannot replace") {
		t.Errorf("replacing state's argv: problems %q", problems)
	}
}

func TestSignalAction(t *testing.T) {
	for _, tt := range []struct {
		sig  syscall.Signal
		pid1 bool
		want string
	}{
		{syscall.SIGTERM, true, "reboot"}, {syscall.SIGINT, true, "reboot"},
		{syscall.SIGUSR2, true, "poweroff"}, {syscall.SIGUSR1, true, "halt"},
		{syscall.SIGTERM, false, "exit"}, {syscall.SIGUSR2, false, "exit"},
	} {
		if got := signalAction(tt.sig, tt.pid1).String(); got != tt.want {
			t.Errorf("signalAction(%v, pid1=%v) = %s, want %s", tt.sig, tt.pid1, got, tt.want)
		}
	}
}
