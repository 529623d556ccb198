// Package netconf brings up the box's wired network: the interface named
// in config.yaml or else the first wired one, configured statically or by
// DHCP (insomniacslk/dhcp's client, renewing at T1 and starting over when
// a lease runs out), with addresses and routes set over netlink and the
// name servers written to a resolv.conf.
package netconf

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/vishvananda/netlink"

	"github.com/ote-edge/ote/appliance/backoff"
	"github.com/ote-edge/ote/appliance/config"
)

// Config configures Run.
type Config struct {
	Network    config.Network
	Hostname   string // sent to the DHCP server
	ResolvConf string // where to write name servers, e.g. /run/resolv.conf
	Log        *slog.Logger
}

// Run configures the interface and keeps it configured until ctx ends.
func Run(ctx context.Context, cfg Config) error {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	link, err := pickLink(cfg.Network.Interface)
	if err != nil {
		return err
	}
	name := link.Attrs().Name
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("bring up %s: %w", name, err)
	}
	if cfg.Network.Mode == "static" {
		if err := applyStatic(link, cfg); err != nil {
			return err
		}
		cfg.Log.Info("static address set", "interface", name, "address", cfg.Network.Address, "gateway", cfg.Network.Gateway)
		<-ctx.Done()
		return nil
	}
	return runDHCP(ctx, link, cfg)
}

func applyStatic(link netlink.Link, cfg Config) error {
	n := cfg.Network
	p, err := netip.ParsePrefix(n.Address)
	if err != nil {
		return fmt.Errorf("static address %q: %w", n.Address, err)
	}
	var gw net.IP
	if n.Gateway != "" {
		gw = net.ParseIP(n.Gateway)
	}
	ipnet := &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
	return apply(link, ipnet, gw, 0, n.DNS, cfg.ResolvConf)
}

// apply sets the address (valid for lifetime; 0 means forever), the
// default route and the name servers.
func apply(link netlink.Link, ipnet *net.IPNet, gw net.IP, lifetime time.Duration, dns []string, resolv string) error {
	addr := &netlink.Addr{IPNet: ipnet}
	if lifetime > 0 {
		secs := int(lifetime / time.Second)
		addr.ValidLft, addr.PreferedLft = secs, secs
	}
	if err := netlink.AddrReplace(link, addr); err != nil {
		return fmt.Errorf("set address %s on %s: %w", ipnet, link.Attrs().Name, err)
	}
	if gw != nil {
		route := &netlink.Route{LinkIndex: link.Attrs().Index, Gw: gw, Dst: nil}
		if err := netlink.RouteReplace(route); err != nil {
			return fmt.Errorf("default route via %s: %w", gw, err)
		}
	}
	if resolv != "" && len(dns) > 0 {
		if err := writeResolvConf(resolv, dns); err != nil {
			return err
		}
	}
	return nil
}

// writeResolvConf replaces path atomically, so readers never see half a file.
func writeResolvConf(path string, servers []string) error {
	var b strings.Builder
	b.WriteString("# written by ote\n")
	for _, s := range servers {
		fmt.Fprintf(&b, "nameserver %s\n", s)
	}
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, []byte(b.String()), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func runDHCP(ctx context.Context, link netlink.Link, cfg Config) error {
	name := link.Attrs().Name
	bo := backoff.Backoff{Min: time.Second, Max: time.Minute, Jitter: 0.2}
	for {
		err := dhcpSession(ctx, name, link, cfg)
		if ctx.Err() != nil {
			return nil
		}
		cfg.Log.Warn("dhcp", "interface", name, "err", err)
		if bo.Wait(ctx) != nil {
			return nil
		}
	}
}

// dhcpSession gets a lease and renews it until it cannot; it returns why.
func dhcpSession(ctx context.Context, name string, link netlink.Link, cfg Config) error {
	client, err := nclient4.New(name, nclient4.WithTimeout(4*time.Second), nclient4.WithRetry(3))
	if err != nil {
		return fmt.Errorf("dhcp client on %s: %w", name, err)
	}
	defer client.Close()
	var mods []dhcpv4.Modifier
	if cfg.Hostname != "" {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptHostName(cfg.Hostname)))
	}
	lease, err := client.Request(ctx, mods...)
	if err != nil {
		return fmt.Errorf("request: %w", err)
	}
	for {
		ack := lease.ACK
		life := ack.IPAddressLeaseTime(time.Hour)
		if err := applyLease(link, ack, life, cfg.ResolvConf); err != nil {
			return err
		}
		cfg.Log.Info("dhcp lease", "interface", name, "address", ack.YourIPAddr, "router", ack.Router(), "dns", ack.DNS(), "lease", life)
		renewAt := ack.IPAddressRenewalTime(life / 2)
		expires := lease.CreationTime.Add(life)
		t := time.NewTimer(renewAt)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		renewed, err := client.Renew(ctx, lease, mods...)
		for err != nil && time.Now().Before(expires) {
			cfg.Log.Warn("dhcp renew", "interface", name, "err", err)
			wait := min(time.Until(expires)/2, time.Minute)
			t := time.NewTimer(max(wait, time.Second))
			select {
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-t.C:
			}
			renewed, err = client.Renew(ctx, lease, mods...)
		}
		if err != nil {
			return fmt.Errorf("lease on %s expired: %w", name, err)
		}
		lease = renewed
	}
}

func applyLease(link netlink.Link, ack *dhcpv4.DHCPv4, life time.Duration, resolv string) error {
	mask := ack.SubnetMask()
	if mask == nil {
		mask = ack.YourIPAddr.DefaultMask()
	}
	var gw net.IP
	if r := ack.Router(); len(r) > 0 {
		gw = r[0]
	}
	var dns []string
	for _, ip := range ack.DNS() {
		dns = append(dns, ip.String())
	}
	return apply(link, &net.IPNet{IP: ack.YourIPAddr, Mask: mask}, gw, life, dns, resolv)
}

// pickLink returns the named link, or the first wired one.
func pickLink(name string) (netlink.Link, error) {
	if name != "" {
		l, err := netlink.LinkByName(name)
		if err != nil {
			return nil, fmt.Errorf("interface %q: %w", name, err)
		}
		return l, nil
	}
	links, err := netlink.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list interfaces: %w", err)
	}
	var cands []candidate
	for _, l := range links {
		a := l.Attrs()
		cands = append(cands, candidate{
			name:     a.Name,
			index:    a.Index,
			ether:    a.EncapType == "ether",
			physical: exists(filepath.Join("/sys/class/net", a.Name, "device")),
			wireless: exists(filepath.Join("/sys/class/net", a.Name, "wireless")),
		})
	}
	c, err := firstWired(cands)
	if err != nil {
		return nil, err
	}
	return netlink.LinkByName(c)
}

type candidate struct {
	name                      string
	index                     int
	ether, physical, wireless bool
}

// ErrNoWired is returned when the box has no wired interface.
var ErrNoWired = errors.New("no wired network interface")

// firstWired picks the physical Ethernet interface with the lowest index.
func firstWired(cands []candidate) (string, error) {
	sort.Slice(cands, func(i, j int) bool { return cands[i].index < cands[j].index })
	for _, c := range cands {
		if c.ether && c.physical && !c.wireless {
			return c.name, nil
		}
	}
	return "", ErrNoWired
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
