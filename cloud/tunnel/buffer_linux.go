package tunnel

import (
	"net"
	"syscall"
)

// GrowReadBuffer sets a UDP socket's receive buffer to size: within the
// system's limit (net.core.rmem_max) as anyone, beyond it with
// CAP_NET_ADMIN. Failing both, the socket keeps what it had, or what
// quic-go sets.
func GrowReadBuffer(udp *net.UDPConn, size int) {
	if raw, err := udp.SyscallConn(); err == nil {
		var serr error
		raw.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUFFORCE, size)
		})
		if serr == nil {
			return
		}
	}
	udp.SetReadBuffer(size)
}
