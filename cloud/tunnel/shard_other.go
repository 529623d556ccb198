//go:build !linux

package tunnel

import (
	"errors"
	"net"
)

// listenShard needs Linux's socket steering.
func listenShard(string, int) (*net.UDPConn, error) {
	return nil, errors.New("sharded listeners need Linux")
}
