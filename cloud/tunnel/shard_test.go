//go:build linux

package tunnel

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
)

// Two shards share one UDP port; the connections of one client socket,
// which the kernel's own hash would hand to one shard, spread over both,
// and each exchanges frames both ways after its handshake, so every
// packet of it, handshake and after, reached the shard that holds it.
func TestShardsShareAPort(t *testing.T) {
	ca, server, client := testTree(t)
	key := [32]byte{7}
	socks, err := ShardSockets("127.0.0.1:0", 2)
	if err != nil {
		t.Fatal(err)
	}
	if a, b := socks[0].LocalAddr().String(), socks[1].LocalAddr().String(); a != b {
		t.Fatalf("shard sockets on %s and %s", a, b)
	}
	first, err := ListenOn(socks[0], ServerTLS(server, ca.Cert), ListenConfig{ResetKey: key, Shards: 2, Shard: 0})
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	second, err := ListenOn(socks[1], ServerTLS(server, ca.Cert), ListenConfig{ResetKey: key, Shards: 2, Shard: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var mu sync.Mutex
	held := map[string]int{} // cluster name -> shard that holds it
	var serving sync.WaitGroup
	for shard, ln := range []*Listener{first, second} {
		serving.Go(func() {
			for {
				conn, err := ln.Accept(ctx)
				if err != nil {
					return
				}
				serving.Go(func() {
					str, err := conn.AcceptStream(ctx)
					if err != nil {
						return
					}
					m, err := NewReader(str).Read()
					hello, ok := m.(*Hello)
					if err != nil || !ok {
						t.Errorf("shard %d: want Hello, got %T, %v", shard, m, err)
						return
					}
					mu.Lock()
					held[hello.AgentVersion] = shard
					mu.Unlock()
					if err := WriteFrame(str, &Welcome{Parent: fmt.Sprintf("shard-%d", shard)}); err != nil {
						t.Errorf("shard %d: %v", shard, err)
					}
				})
			}
		})
	}

	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	tr := &quic.Transport{Conn: udp}
	defer tr.Close()
	raddr := first.Addr()
	const conns = 24
	welcomed := map[string]string{} // cluster -> the shard that welcomed it
	for i := range conns {
		name := fmt.Sprintf("leaf-%d", i)
		conn, err := tr.Dial(ctx, raddr, ClientTLS(client, ca.Cert), ChildQUICConfig(time.Minute))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		defer conn.CloseWithError(0, "")
		str, err := conn.OpenStreamSync(ctx)
		if err == nil {
			err = WriteFrame(str, &Hello{CapabilityVersion: CapabilityVersion, AgentVersion: name})
		}
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		m, err := NewReader(str).Read()
		w, ok := m.(*Welcome)
		if err != nil || !ok {
			t.Fatalf("%s: want Welcome, got %T, %v", name, m, err)
		}
		welcomed[name] = w.Parent
	}
	cancel()
	first.Close()
	second.Close()
	serving.Wait()

	per := [2]int{}
	for name, shard := range held {
		per[shard]++
		if want := fmt.Sprintf("shard-%d", shard); welcomed[name] != want {
			t.Errorf("%s: said Hello to shard %d, welcomed by %s", name, shard, welcomed[name])
		}
	}
	if len(held) != conns || per[0] == 0 || per[1] == 0 {
		t.Fatalf("%d connections held, %d by shard 0 and %d by shard 1: want all %d, on both", len(held), per[0], per[1], conns)
	}
}

// A shard's connection IDs name it in their first byte, and the rest is
// random.
func TestShardConnectionIDs(t *testing.T) {
	gen := shardIDs{shard: 3, shards: 5}
	seen := map[string]bool{}
	firsts := map[byte]bool{}
	for range 2000 {
		id, err := gen.GenerateConnectionID()
		if err != nil {
			t.Fatal(err)
		}
		b := id.Bytes()
		if len(b) != gen.ConnectionIDLen() || b[0]%5 != 3 {
			t.Fatalf("ID %x: want %d bytes, the first 3 modulo 5", b, gen.ConnectionIDLen())
		}
		if seen[string(b)] {
			t.Fatalf("ID %x twice", b)
		}
		seen[string(b)] = true
		firsts[b[0]] = true
	}
	// 51 bytes below 256 are 3 modulo 5: the first byte varies too.
	if len(firsts) < 40 {
		t.Errorf("%d first bytes in 2000 IDs, want most of the 51 that are 3 modulo 5", len(firsts))
	}
}

func TestShardsOutOfRange(t *testing.T) {
	ca, server, _ := testTree(t)
	for _, lc := range []ListenConfig{{Shards: MaxShards + 1}, {Shards: 2, Shard: 2}, {Shards: 3, Shard: -1}, {Shards: -1}} {
		udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		ln, err := ListenOn(udp, ServerTLS(server, ca.Cert), lc)
		if err == nil {
			ln.Close()
			t.Errorf("shard %d of %d: listening", lc.Shard, lc.Shards)
			continue
		}
		if !strings.Contains(err.Error(), fmt.Sprint(lc.Shards)) {
			t.Errorf("shard %d of %d: %v does not name the count", lc.Shard, lc.Shards, err)
		}
		// The listener took the socket, and closed it with the error.
		if _, err := udp.WriteToUDP([]byte{0}, udp.LocalAddr().(*net.UDPAddr)); !errors.Is(err, net.ErrClosed) {
			t.Errorf("shard %d of %d: the socket is still open (%v)", lc.Shard, lc.Shards, err)
		}
	}
	for _, n := range []int{0, 1, MaxShards + 1} {
		if socks, err := ShardSockets("127.0.0.1:0", n); err == nil || !strings.Contains(err.Error(), fmt.Sprint(n)) {
			t.Errorf("ShardSockets(%d): %d sockets, %v", n, len(socks), err)
		}
	}
	if ln, err := Listen("127.0.0.1:0", ServerTLS(server, ca.Cert), ListenConfig{Shards: 2}); err == nil {
		ln.Close()
		t.Error("Listen bound a shard on a socket of its own")
	}
}
