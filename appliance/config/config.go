package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"
	"gopkg.in/yaml.v3"
)

// Config is ote/config.yaml. Every field is optional.
type Config struct {
	Hostname string             `yaml:"hostname"`
	Network  Network            `yaml:"network"`
	Status   Status             `yaml:"status"`
	Uplink   Uplink             `yaml:"uplink"`
	Services map[string]Service `yaml:"services"`
}

// Uplink tunes how the box holds its tunnel to its parent; zero fields
// take the defaults (see uplink.Config).
type Uplink struct {
	// LostAfter is how long the parent may stay silent before the box
	// takes it for lost (default 30s).
	LostAfter time.Duration `yaml:"lostAfter"`
	// FailoverAfter is how long the box tries each alternate parent
	// (default 2s).
	FailoverAfter time.Duration `yaml:"failoverAfter"`
	// ReturnEvery is how often the box, on an alternate, looks for its
	// own parent (default 10s).
	ReturnEvery time.Duration `yaml:"returnEvery"`
}

// Network configures the first wired interface (or Interface).
type Network struct {
	Mode      string   `yaml:"mode"`      // "dhcp" (default) or "static"
	Interface string   `yaml:"interface"` // default: the first wired interface
	Address   string   `yaml:"address"`   // static: CIDR, e.g. 192.168.1.10/24
	Gateway   string   `yaml:"gateway"`   // static
	DNS       []string `yaml:"dns"`
}

// Status configures the local status page.
type Status struct {
	Listen string `yaml:"listen"` // default ":80"
	// PasswordHash is the bcrypt hash of the device password. Without it
	// a random password is generated at first boot and printed on the
	// console.
	PasswordHash string `yaml:"passwordHash"`
}

// Service overrides a built-in service, or with Argv adds one of the
// user's own to the supervised tree.
type Service struct {
	Disabled  bool     `yaml:"disabled"`
	Argv      []string `yaml:"argv"`  // only for added services
	After     []string `yaml:"after"` // only for added services
	Ready     *Probe   `yaml:"ready"` // only for added services
	Env       []string `yaml:"env"`
	MemoryMax Size     `yaml:"memoryMax"`
	PidsMax   int64    `yaml:"pidsMax"`
	Restart   string   `yaml:"restart"`
	// StopGrace is how long the service has to stop after SIGTERM.
	StopGrace time.Duration `yaml:"stopGrace"`
}

// Probe tells when an added service is ready: exactly one of its fields.
type Probe struct {
	HTTP   string   `yaml:"http"`   // a URL that answers 2xx
	Socket string   `yaml:"socket"` // a unix socket that accepts
	Exec   []string `yaml:"exec"`   // a command that exits 0
}

// Size is a byte count written as a number or with a binary (Ki, Mi, Gi)
// or decimal (k, M, G) suffix.
type Size int64

var sizeRe = regexp.MustCompile(`^(\d+)\s*(Ki|Mi|Gi|k|K|M|G)?$`)

// UnmarshalYAML implements yaml.Unmarshaler.
func (s *Size) UnmarshalYAML(n *yaml.Node) error {
	m := sizeRe.FindStringSubmatch(strings.TrimSpace(n.Value))
	if n.Kind != yaml.ScalarNode || m == nil {
		return fmt.Errorf("line %d: want a size such as 64Mi or 100000000, got %q", n.Line, n.Value)
	}
	v, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil {
		return fmt.Errorf("line %d: size %q: %v", n.Line, n.Value, err)
	}
	mult := map[string]int64{"": 1, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30}[m[2]]
	*s = Size(v * mult)
	return nil
}

// Default is the configuration of a box with no config.yaml.
func Default() Config {
	return Config{
		Network: Network{Mode: "dhcp"},
		Status:  Status{Listen: ":80"},
	}
}

// Load reads config.yaml at path. A missing file is not an error. On any
// error it returns Default() with the error, so the box boots anyway.
func Load(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return Default(), nil
	}
	if err != nil {
		return Default(), &Error{File: path, Msg: err.Error()}
	}
	c, err := Parse(path, data)
	if err != nil {
		return Default(), err
	}
	return c, nil
}

// Parse parses and validates the contents of config.yaml; file names it in
// errors.
func Parse(file string, data []byte) (Config, error) {
	c := Default()
	root, err := decodeStrict(file, data, &c)
	if err != nil {
		return Config{}, err
	}
	if err := c.validate(file, root); err != nil {
		return Config{}, err
	}
	return c, nil
}

// hostnameRe is an RFC 1123 label.
var hostnameRe = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

func (c *Config) validate(file string, root *yaml.Node) error {
	bad := func(msg string, path ...string) error {
		return &Error{File: file, Line: lineOf(root, path...), Key: strings.Join(path, "."), Msg: msg}
	}
	if c.Hostname != "" && !hostnameRe.MatchString(c.Hostname) {
		return bad(fmt.Sprintf("%q is not a hostname: use 1-63 lowercase letters, digits and inner dashes", c.Hostname), "hostname")
	}
	n := c.Network
	switch n.Mode {
	case "dhcp":
		if n.Address != "" || n.Gateway != "" {
			return bad("address and gateway need mode: static", "network", "mode")
		}
	case "static":
		p, err := netip.ParsePrefix(n.Address)
		if err != nil {
			return bad(fmt.Sprintf("want an address with prefix length such as 192.168.1.10/24: %v", err), "network", "address")
		}
		if n.Gateway != "" {
			gw, err := netip.ParseAddr(n.Gateway)
			if err != nil {
				return bad(fmt.Sprintf("not an IP address: %v", err), "network", "gateway")
			}
			if !p.Masked().Contains(gw) {
				return bad(fmt.Sprintf("gateway %s is outside %s", gw, p.Masked()), "network", "gateway")
			}
		}
	default:
		return bad(fmt.Sprintf("unknown mode %q: want dhcp or static", n.Mode), "network", "mode")
	}
	for i, d := range n.DNS {
		if _, err := netip.ParseAddr(d); err != nil {
			return bad(fmt.Sprintf("not an IP address: %v", err), "network", "dns", strconv.Itoa(i))
		}
	}
	if _, _, err := splitListen(c.Status.Listen); err != nil {
		return bad(err.Error(), "status", "listen")
	}
	if h := c.Status.PasswordHash; h != "" {
		if _, err := bcrypt.Cost([]byte(h)); err != nil {
			return bad("not a bcrypt hash (make one with: htpasswd -nbBC 10 '' PASSWORD | cut -d: -f2)", "status", "passwordHash")
		}
	}
	for _, d := range []struct {
		field    string
		v, least time.Duration
	}{
		{"lostAfter", c.Uplink.LostAfter, time.Second}, // a keepalive goes when half of it passed in silence
		{"failoverAfter", c.Uplink.FailoverAfter, 100 * time.Millisecond},
		{"returnEvery", c.Uplink.ReturnEvery, 100 * time.Millisecond},
	} {
		if d.v != 0 && d.v < d.least {
			return bad(fmt.Sprintf("%v is too short: give at least %v (or leave it out for the default)", d.v, d.least), "uplink", d.field)
		}
	}
	names := make([]string, 0, len(c.Services))
	for name := range c.Services {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		s := c.Services[name]
		switch s.Restart {
		case "", "always", "on-failure", "never":
		default:
			return bad(fmt.Sprintf("unknown restart policy %q: want always, on-failure or never", s.Restart), "services", name, "restart")
		}
		if s.MemoryMax < 0 || s.PidsMax < 0 || s.StopGrace < 0 {
			return bad("limits cannot be negative", "services", name)
		}
		if p := s.Ready; p != nil {
			set := 0
			for _, ok := range []bool{p.HTTP != "", p.Socket != "", len(p.Exec) > 0} {
				if ok {
					set++
				}
			}
			if set != 1 {
				return bad("give exactly one of http, socket, exec", "services", name, "ready")
			}
		}
		if len(s.Argv) == 0 && (len(s.After) > 0 || s.Ready != nil) {
			return bad("after and ready need argv: they only apply to services you add", "services", name)
		}
		for _, e := range s.Env {
			if k, _, ok := strings.Cut(e, "="); !ok || k == "" {
				return bad(fmt.Sprintf("%q is not KEY=VALUE", e), "services", name, "env")
			}
		}
	}
	return nil
}

// splitListen checks a listen address such as ":80" or "127.0.0.1:8080".
func splitListen(addr string) (host string, port int, err error) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("want HOST:PORT or :PORT, got %q", addr)
	}
	port, err = strconv.Atoi(p)
	if err != nil || port < 1 || port > 65535 {
		return "", 0, fmt.Errorf("bad port in %q", addr)
	}
	return h, port, nil
}
