package tests

import (
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
)

// freeLoopbackAddr is an address free on loopback for network ("tcp" or
// "udp"), on a port below the kernel's range of ephemeral ports: a level
// stopped and started again on it finds it free, where a port the kernel
// hands out may go, while the level is down, to a client's socket.
func freeLoopbackAddr(t testing.TB, network string) string {
	t.Helper()
	low := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if v, err := strconv.Atoi(f[0]); err == nil {
				low = v
			}
		}
	}
	const from = 10000
	for range 100 {
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(from+rand.IntN(max(low-from, 1))))
		var c io.Closer
		var err error
		if network == "udp" {
			c, err = net.ListenPacket("udp", addr)
		} else {
			c, err = net.Listen("tcp", addr)
		}
		if err == nil {
			c.Close()
			return addr
		}
	}
	t.Fatalf("no free %s port on loopback from %d to %d", network, from, low)
	return ""
}
