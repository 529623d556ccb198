//go:build !linux

package tunnel

import "net"

// GrowReadBuffer sets a UDP socket's receive buffer to size, within the
// system's limit.
func GrowReadBuffer(udp *net.UDPConn, size int) { udp.SetReadBuffer(size) }
