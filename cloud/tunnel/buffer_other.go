//go:build !linux

package tunnel

import "net"

// growReadBuffer sets a UDP socket's receive buffer to size, within the
// system's limit.
func growReadBuffer(udp *net.UDPConn, size int) { udp.SetReadBuffer(size) }
