package tunnel

import (
	"context"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// shardSockets binds the sockets of ShardSockets, in order, and attaches
// the steering program to the port's group of sockets.
func shardSockets(addr string, n int) ([]*net.UDPConn, error) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		return setsockopt(c, func(fd int) error { return unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1) })
	}}
	socks := make([]*net.UDPConn, 0, n)
	fail := func(err error) ([]*net.UDPConn, error) {
		for _, s := range socks {
			s.Close()
		}
		return nil, err
	}
	for i := range n {
		pc, err := lc.ListenPacket(context.Background(), "udp", addr)
		if err != nil {
			return fail(err)
		}
		socks = append(socks, pc.(*net.UDPConn))
		if i == 0 { // the others take the port the first was given
			addr = pc.LocalAddr().String()
		}
	}
	raw, err := socks[0].SyscallConn()
	if err != nil {
		return fail(err)
	}
	prog := steerProgram(n)
	if err := setsockopt(raw, func(fd int) error {
		return unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_REUSEPORT_CBPF,
			&unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]})
	}); err != nil {
		return fail(err)
	}
	return socks, nil
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
