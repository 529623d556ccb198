// Package shard spreads a level's tunnel over several processes.
//
// A controller that holds many thousand children spends most of its heap
// on their QUIC connections, and a garbage collection of that heap stalls
// every tunnel at once. With shards, the controller's process (the Pool)
// binds the tunnel's UDP port as several sockets (tunnel.ShardSockets)
// and starts one shard process for each (`ote-cloud tunnel-shard`, Main).
// The kernel steers each connection's packets to one shard, which holds
// the QUIC connection, its TLS and keepalives, in a heap of its own.
//
// A shard does not serve the child itself. It hands each connection it
// accepts to the Pool, with the child's verified certificates, and relays
// the child's control stream: the controller serves the child as if the
// QUIC connection were its own (tunnel.Conn), and all the level's state
// stays in one process.
//
// The Pool keeps the sockets open and restarts a shard that exits: a
// shard that restarts keeps its place in the port's group, and its
// children's packets wait in its socket meanwhile (they reconnect, since
// their connections died with the shard).
//
// One Unix stream socket pair joins a shard to the Pool, whatever the
// number of its children. Each frame on it is a kind, the child's stream
// (numbered by the shard), a length and a payload: the Pool sends the
// shard its setup and every new certificate; the shard sends an open
// frame for each child; both send the control stream's bytes, its end
// (fin) and the connection's end (close, with a code and reason). Each
// side may send 64 KiB of a stream ahead of the other's reading, and is
// credited as the other side reads (window): as QUIC's own flow control
// does, this holds back a child, or the controller, that writes faster
// than the other reads, without holding up the rest.
package shard
