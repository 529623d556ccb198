package tunnel

import (
	"crypto/rand"
	"fmt"
	"net"

	"github.com/quic-go/quic-go"
)

// MaxShards bounds ListenConfig.Shards: a connection ID names its shard
// in its first byte.
const MaxShards = 64

// shardIDLen is the length of a sharded listener's connection IDs: one
// byte that names the shard, and seven random ones, so that the IDs of
// many thousand connections per shard do not collide.
const shardIDLen = 8

// shardIDs makes the connection IDs of one shard of a listener: the first
// byte is congruent to the shard modulo the number of shards, which is how
// the socket's steering program (steerProgram) finds the shard again.
type shardIDs struct{ shard, shards int }

func (s shardIDs) GenerateConnectionID() (quic.ConnectionID, error) {
	var b [shardIDLen]byte
	if _, err := rand.Read(b[:]); err != nil {
		return quic.ConnectionID{}, err
	}
	// The bytes below 256 that leave this shard's remainder, picked
	// evenly enough: the byte only steers.
	choices := (255-s.shard)/s.shards + 1
	b[0] = byte(s.shard + s.shards*(int(b[0])%choices))
	return quic.ConnectionIDFromBytes(b[:]), nil
}

func (s shardIDs) ConnectionIDLen() int { return shardIDLen }

// ShardSockets binds n UDP sockets to addr's port (if its port is 0, to
// the one the first is given), one for each shard of a listener
// (ListenConfig.Shards). The kernel hands each datagram for the port to
// the socket its connection ID names, by the order the sockets were
// bound: socket i is shard i's, to ListenOn in whichever process holds
// that shard. A process that keeps the sockets open keeps the order, and
// a shard's datagrams wait in its socket while the shard restarts. Linux
// only.
func ShardSockets(addr string, n int) ([]*net.UDPConn, error) {
	if n < 2 || n > MaxShards {
		return nil, fmt.Errorf("%d shards: give 2 to %d", n, MaxShards)
	}
	return shardSockets(addr, n)
}

// checkShard validates ListenConfig's Shard and Shards.
func checkShard(shard, shards int) error {
	if shards < 0 || shards > MaxShards {
		return fmt.Errorf("%d shards: give 1 to %d", shards, MaxShards)
	}
	if shards > 1 && (shard < 0 || shard >= shards) {
		return fmt.Errorf("shard %d of %d: give 0 to %d", shard, shards, shards-1)
	}
	return nil
}
