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
		if setsockopt(raw, func(fd int) error {
			return syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_RCVBUFFORCE, size)
		}) == nil {
			return
		}
	}
	udp.SetReadBuffer(size)
}

// setsockopt runs set on the socket behind raw, and returns its error or
// the error of getting at the socket.
func setsockopt(raw syscall.RawConn, set func(fd int) error) error {
	var serr error
	if err := raw.Control(func(fd uintptr) { serr = set(int(fd)) }); err != nil {
		return err
	}
	return serr
}
