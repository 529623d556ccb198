package tunnel

import (
	"context"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// listenShard binds one of shards sockets that share addr's UDP port
// (SO_REUSEPORT), and steers each datagram to the socket of the shard its
// connection ID names. The kernel numbers a port's sockets in the order
// they were bound, so shard i must be the i-th to bind.
func listenShard(addr string, shards int) (*net.UDPConn, error) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		}); err != nil {
			return err
		}
		return serr
	}}
	pc, err := lc.ListenPacket(context.Background(), "udp", addr)
	if err != nil {
		return nil, err
	}
	udp := pc.(*net.UDPConn)
	raw, err := udp.SyscallConn()
	if err != nil {
		udp.Close()
		return nil, err
	}
	prog := steerProgram(shards)
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptSockFprog(int(fd), unix.SOL_SOCKET, unix.SO_ATTACH_REUSEPORT_CBPF,
			&unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]})
	}); err != nil {
		serr = err
	}
	if serr != nil {
		udp.Close()
		return nil, serr
	}
	return udp, nil
}

// steerProgram is a classic BPF program, run by the kernel on the UDP
// payload of each datagram to the port, that returns the index of the
// socket to deliver it to: the first byte of the destination connection
// ID modulo shards. A short header packet carries that ID from its second
// byte, a long header one (a handshake) from its seventh, after the
// version and the ID's length. The client picks the ID of its first
// packets at random, which spreads new connections over the shards; the
// shard's reply gives it one of the shard's own IDs (shardIDs). A
// datagram too short to read ends the program with 0: the first shard
// answers it, as it would anything it does not know.
func steerProgram(shards int) []unix.SockFilter {
	return []unix.SockFilter{
		{Code: unix.BPF_LD | unix.BPF_B | unix.BPF_ABS, K: 0},
		{Code: unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K, K: 0x80, Jt: 2, Jf: 0},
		{Code: unix.BPF_LD | unix.BPF_B | unix.BPF_ABS, K: 1},
		{Code: unix.BPF_JMP | unix.BPF_JA, K: 1},
		{Code: unix.BPF_LD | unix.BPF_B | unix.BPF_ABS, K: 6},
		{Code: unix.BPF_ALU | unix.BPF_MOD | unix.BPF_K, K: uint32(shards)},
		{Code: unix.BPF_RET | unix.BPF_A},
	}
}
