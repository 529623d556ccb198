//go:build !linux

package tunnel

import (
	"errors"
	"net"
)

// shardSockets needs Linux's socket steering.
func shardSockets(string, int) ([]*net.UDPConn, error) {
	return nil, errors.New("sharded listeners need Linux")
}
