package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseValid(t *testing.T) {
	in := `
hostname: box-1
network:
  mode: static
  address: 192.168.1.10/24
  gateway: 192.168.1.1
  dns: [1.1.1.1]
status:
  listen: 127.0.0.1:8080
  passwordHash: "$2a$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy"
services:
  nodeagent:
    memoryMax: 64Mi
    pidsMax: 100
    env: [LEVEL=debug]
    restart: on-failure
    stopGrace: 2s
uplink:
  lostAfter: 10s
  returnEvery: 1m
`
	c, err := Parse("config.yaml", []byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if c.Hostname != "box-1" || c.Network.Gateway != "192.168.1.1" || c.Status.Listen != "127.0.0.1:8080" {
		t.Errorf("Parse = %+v", c)
	}
	if s := c.Services["nodeagent"]; s.MemoryMax != 64<<20 || s.PidsMax != 100 || s.Restart != "on-failure" || s.StopGrace != 2*time.Second {
		t.Errorf("services.nodeagent = %+v, want 64Mi, 100 pids, on-failure, 2s grace", s)
	}
	if u := c.Uplink; u.LostAfter != 10*time.Second || u.ReturnEvery != time.Minute || u.FailoverAfter != 0 {
		t.Errorf("uplink = %+v, want 10s, default, 1m", u)
	}
}

func TestParseEmptyGivesDefaults(t *testing.T) {
	c, err := Parse("config.yaml", nil)
	if err != nil || c.Status.Listen != ":80" || c.Network.Mode != "dhcp" {
		t.Errorf("Parse(empty) = %+v, %v; want defaults", c, err)
	}
}

func TestParseErrorsNameFileLineAndKey(t *testing.T) {
	tests := []struct{ in, want string }{
		{"hostname: box\nnetwrok: {}\n", `config.yaml:2: netwrok: unknown key "netwrok"`},
		{"network:\n  mode: dhcp\n  adress: 1.2.3.4/24\n", `config.yaml:3: network.adress: unknown key "adress"`},
		{"hostname: Box_1\n", `config.yaml:1: hostname: "Box_1" is not a hostname`},
		{"network:\n  mode: static\n  address: 10.0.0.1\n", `config.yaml:3: network.address: want an address with prefix length`},
		{"network:\n  mode: static\n  address: 10.0.0.1/24\n  gateway: 10.0.1.1\n", `config.yaml:4: network.gateway: gateway 10.0.1.1 is outside 10.0.0.0/24`},
		{"network:\n  mode: wifi\n", `config.yaml:2: network.mode: unknown mode "wifi"`},
		{"status:\n  listen: localhost\n", `config.yaml:2: status.listen: want HOST:PORT or :PORT`},
		{"status:\n  passwordHash: hunter2\n", `config.yaml:2: status.passwordHash: not a bcrypt hash`},
		{"services:\n  x:\n    memoryMax: lots\n", `config.yaml:3: services.x.memoryMax: want a size such as 64Mi`},
		{"services:\n  x:\n    pidsMax: many\n", `config.yaml:3: services.x.pidsMax: wrong type:`},
		{"services:\n  x:\n    restart: sometimes\n", `config.yaml:3: services.x.restart: unknown restart policy "sometimes"`},
		{"uplink:\n  lostAfter: 200ms\n", `config.yaml:2: uplink.lostAfter: 200ms is too short: give at least 1s`},
		{"uplink:\n  returnEvery: -1s\n", `config.yaml:2: uplink.returnEvery: -1s is too short`},
		{"uplink:\n  failoverAfter: soon\n", `config.yaml:2: uplink.failoverAfter: `},
		{"hostname: [a\n", `config.yaml:1: `},
		{"- a\n- b\n", `config.yaml:1: want a mapping`},
	}
	for _, tt := range tests {
		_, err := Parse("config.yaml", []byte(tt.in))
		var ce *Error
		if !errors.As(err, &ce) || !strings.HasPrefix(err.Error(), tt.want) {
			t.Errorf("Parse(%q) = %v, want *Error starting %q", tt.in, err, tt.want)
		}
	}
}

func TestLoadFallsBackToDefaults(t *testing.T) {
	dir := t.TempDir()
	c, err := Load(filepath.Join(dir, "missing.yaml"))
	if err != nil || c.Status.Listen != ":80" {
		t.Errorf("Load(missing) = %+v, %v; want defaults and no error", c, err)
	}
	p := filepath.Join(dir, "config.yaml")
	os.WriteFile(p, []byte("hostname: 'bad name'\n"), 0o644)
	c, err = Load(p)
	if err == nil || !strings.Contains(err.Error(), p+":1: hostname:") || c.Status.Listen != ":80" {
		t.Errorf("Load(bad) = %+v, %v; want defaults and an error naming %s:1", c, err, p)
	}
}

func TestParseEnroll(t *testing.T) {
	e, err := ParseEnroll("enroll.yaml", []byte("server: 10.0.2.2:7443\ntoken: abc\nname: berlin-1\ntags: {site: berlin-1, tier: shop}\n"))
	if err != nil || e.Server != "10.0.2.2:7443" || e.Tags["site"] != "berlin-1" {
		t.Fatalf("ParseEnroll = %+v, %v", e, err)
	}
	bad := []struct{ in, want string }{
		{"token: abc\n", `enroll.yaml:1: server: missing`},
		{"server: :7443\ntoken: abc\n", `enroll.yaml:1: server: want HOST:PORT`},
		{"server: a:1\n", `enroll.yaml:1: token: missing`},
		{"server: a:1\ntoken: t\nname: Berlin\n", `enroll.yaml:3: name: "Berlin" is not a cluster name`},
		{"server: a:1\ntoken: t\ntags:\n  'a b': c\n", `enroll.yaml:4: tags.a b: bad tag`},
		{"server: a:1\ntoken: t\nsecret: x\n", `enroll.yaml:3: secret: unknown key "secret"`},
		{"\x00\x01", `enroll.yaml`},
	}
	for _, tt := range bad {
		if _, err := ParseEnroll("enroll.yaml", []byte(tt.in)); err == nil || !strings.HasPrefix(err.Error(), tt.want) {
			t.Errorf("ParseEnroll(%q) = %v, want an error starting %q", tt.in, err, tt.want)
		}
	}
	if _, err := LoadEnroll(filepath.Join(t.TempDir(), "enroll.yaml")); !errors.Is(err, ErrNoEnroll) {
		t.Errorf("LoadEnroll(missing) = %v, want ErrNoEnroll", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("hostname: box-1\nnetwork:\n  mode: dhcp\n"))
	f.Add([]byte("services:\n  x:\n    memoryMax: 64Mi\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("config.yaml", data)
		if err != nil {
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("Parse error %v is not an *Error", err)
			}
			return
		}
		if c.Status.Listen == "" {
			t.Fatalf("valid config without a listen address: %+v", c)
		}
	})
}
