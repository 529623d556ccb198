package shard

import (
	"bufio"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"runtime/debug"
	"sync"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/ote-edge/ote/cloud/gcpace"
	"github.com/ote-edge/ote/cloud/profiling"
	"github.com/ote-edge/ote/cloud/tunnel"
	"github.com/ote-edge/ote/cross/multicall"
)

// The files a shard process is started with, after stdin, stdout and
// stderr.
const (
	fdSocket  = 3 // its UDP socket of the tunnel's port
	fdChannel = 4 // its channel to the Pool
)

// Main is `ote-cloud tunnel-shard`, which a Pool starts: it takes its
// socket and channel as files 3 and 4, and holds its children's
// connections until the Pool closes the channel.
func Main(ctx context.Context, args []string) error {
	fs := multicall.FlagSet("tunnel-shard", os.Stderr)
	if err := multicall.Parse(fs, args, 0); err != nil {
		return err
	}
	return Serve(ctx, os.NewFile(fdSocket, "udp"), os.NewFile(fdChannel, "channel"), os.Stderr)
}

// Serve is a shard's process: on udp, a socket of the tunnel's port, it
// holds the connections of its share of the children and relays their
// control streams to the Pool over channel. It logs to stderr. It
// returns when the Pool closes the channel, or when ctx ends, once it
// has closed the connections left.
func Serve(ctx context.Context, udp, channelFile *os.File, stderr io.Writer) error {
	defer udp.Close() // the socket goes on in its copy
	conn, err := fileConn(channelFile)
	if err != nil {
		return fmt.Errorf("tunnel shard: channel: %w", err)
	}
	defer conn.Close()
	r := bufio.NewReaderSize(conn, 64<<10)
	su, err := readSetup(conn, r)
	if err != nil {
		return fmt.Errorf("tunnel shard: setup: %w", err)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})).With("shard", su.Shard)
	if su.Procs > 0 {
		runtime.GOMAXPROCS(su.Procs)
	}
	if su.MemoryLimit > 0 {
		debug.SetGCPercent(-1)
		debug.SetMemoryLimit(su.MemoryLimit)
		// Collections started half way to the bound, none past its
		// goal (package gcpace).
		pctx, stopPacing := context.WithCancel(ctx)
		paced := make(chan struct{})
		go func() {
			defer close(paced)
			gcpace.Run(pctx, time.Second, log)
		}()
		defer func() {
			stopPacing()
			<-paced
		}()
	}
	if su.Profiling != "" {
		// The shard works without them: a port taken is only logged.
		if stop, err := profiling.Serve(ctx, su.Profiling); err != nil {
			log.Warn("profiles", "err", err)
		} else {
			defer stop()
		}
	}
	s := &server{ch: newChannel(conn), log: log, relays: map[uint32]*relay{}}
	if err := s.setCertificate(su.Certificate); err != nil {
		return fmt.Errorf("tunnel shard: %w", err)
	}
	root, err := x509.ParseCertificate(su.Root)
	if err != nil {
		return fmt.Errorf("tunnel shard: root CA: %w", err)
	}
	uc, err := net.FilePacketConn(udp)
	if err != nil {
		return fmt.Errorf("tunnel shard: socket: %w", err)
	}
	sock, ok := uc.(*net.UDPConn)
	if !ok {
		uc.Close()
		return fmt.Errorf("tunnel shard: file %d is a %T, not a UDP socket", fdSocket, uc)
	}
	ln, err := tunnel.ListenOn(sock, s.cert.TLS(root), tunnel.ListenConfig{
		ResetKey: su.ResetKey, MaxHandshakes: su.MaxHandshakes, KeepAlive: su.KeepAlive,
		Shards: su.Shards, Shard: su.Shard,
	})
	if err != nil {
		return fmt.Errorf("tunnel shard %d: %w", su.Shard, err)
	}
	defer ln.Close()

	ctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		s.receive(r)
		stop()
	}()
	var wg sync.WaitGroup
	for {
		qc, err := ln.Accept(ctx)
		if err != nil {
			break
		}
		wg.Go(func() { s.relay(qc) })
	}
	// The Pool is gone, or going: what it did not close goes as a
	// parent's shutdown.
	s.mu.Lock()
	s.stopped = true
	for _, rl := range s.relays {
		rl.stream.end(&quic.ApplicationError{ErrorCode: tunnel.CloseShutdown, ErrorMessage: "parent shutting down"})
	}
	s.mu.Unlock()
	wg.Wait()
	return nil
}

// readSetup reads the Pool's first frame, the shard's setup, from r, its
// buffered reader of conn.
func readSetup(conn net.Conn, r io.Reader) (*setup, error) {
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	defer conn.SetReadDeadline(time.Time{})
	kind, _, payload, err := readFrame(r)
	if err != nil {
		return nil, err
	}
	if kind != kindSetup {
		return nil, fmt.Errorf("the first frame is %q, not a setup", kind)
	}
	var su setup
	if err := json.Unmarshal(payload, &su); err != nil {
		return nil, err
	}
	return &su, nil
}

// server is a shard's process.
type server struct {
	ch   channel
	log  *slog.Logger
	cert tunnel.ServerCert

	mu      sync.Mutex
	next    uint32
	relays  map[uint32]*relay
	stopped bool
}

// relay is a child's connection that this shard holds.
type relay struct {
	conn   *quic.Conn
	str    *quic.Stream // its control stream
	stream *stream      // the control stream's end on the channel
}

func (s *server) setCertificate(c certificate) error {
	cert, err := c.tls()
	if err != nil {
		return err
	}
	s.cert.Set(cert)
	return nil
}

// receive serves the Pool's side of the channel until it closes.
func (s *server) receive(r io.Reader) {
	for {
		kind, id, payload, err := readFrame(r)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				s.log.Warn("channel", "err", err)
			}
			return
		}
		if kind == kindCertificate {
			var c certificate
			err := json.Unmarshal(payload, &c)
			if err == nil {
				err = s.setCertificate(c)
			}
			if err != nil {
				s.log.Error("new certificate", "err", err)
			}
			continue
		}
		s.mu.Lock()
		rl := s.relays[id]
		s.mu.Unlock()
		if rl == nil || rl.stream.deliver(kind, payload) {
			continue // its connection ended here already, or delivered
		}
		if kind == kindClose {
			code, reason, err := parseClose(payload)
			if err != nil {
				code, reason = uint64(tunnel.CloseProtocol), err.Error()
			}
			rl.stream.end(&quic.ApplicationError{ErrorCode: quic.ApplicationErrorCode(code), ErrorMessage: reason})
		}
	}
}

// relay hands a child's connection to the Pool and relays its control
// stream until the connection ends. Its goroutine, one per child, waits
// in up for most of the connection's life, and the runtime shrinks a
// stack only while well under a quarter of it is in use: so the
// connect's work, and its larger frame, is accept's, which has returned
// by then. (A shard's first collection found 5 MB of its children's
// stacks in use so, against 7 MB with the frame still below up's.)
func (s *server) relay(conn *quic.Conn) {
	rl := s.accept(conn)
	if rl == nil {
		return
	}
	defer s.forget(rl.stream.id)
	rl.up()
}

// forget drops a relay whose connection has ended.
func (s *server) forget(id uint32) {
	s.mu.Lock()
	delete(s.relays, id)
	s.mu.Unlock()
}

// accept takes a child's control stream, numbers it and sends the Pool
// its open frame. It returns nil, with the connection closed, if the
// child or the Pool went away first.
func (s *server) accept(conn *quic.Conn) *relay {
	actx, cancel := context.WithTimeout(conn.Context(), 15*time.Second)
	str, err := conn.AcceptStream(actx)
	cancel()
	if err != nil {
		conn.CloseWithError(tunnel.CloseProtocol, "no control stream")
		return nil
	}
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		conn.CloseWithError(tunnel.CloseShutdown, "parent shutting down")
		return nil
	}
	s.next++
	id := s.next
	rl := &relay{conn: conn, str: str, stream: newStream(s.ch, id)}
	rl.stream.pump = rl.down
	s.relays[id] = rl
	s.mu.Unlock()
	state := conn.ConnectionState().TLS
	o := &open{ALPN: state.NegotiatedProtocol, Remote: conn.RemoteAddr().String()}
	for _, c := range state.PeerCertificates {
		o.Peers = append(o.Peers, c.Raw)
	}
	if err := s.ch.sendJSON(kindOpen, id, o); err != nil {
		s.forget(id)
		conn.CloseWithError(tunnel.CloseShutdown, "parent shutting down")
		return nil
	}
	return rl
}

// up copies the child's control stream to the Pool, and then tells it
// how the connection ended.
func (rl *relay) up() {
	conn := rl.conn
	buf := make([]byte, 512)
	var err error
	for {
		var n int
		n, err = rl.str.Read(buf)
		if n > 0 {
			if _, werr := rl.stream.Write(buf[:n]); werr != nil {
				// The Pool closed the connection, or is gone: down
				// closes it with the Pool's code.
				<-conn.Context().Done()
				break
			}
		}
		if errors.Is(err, io.EOF) {
			rl.stream.Close()
			<-conn.Context().Done()
			break
		}
		if err != nil {
			break
		}
	}
	if conn.Context().Err() == nil {
		// The stream ended and the connection did not.
		conn.CloseWithError(tunnel.CloseProtocol, fmt.Sprintf("control stream: %v", err))
	}
	cause := context.Cause(conn.Context())
	var code uint64
	if ae, ok := errors.AsType[*quic.ApplicationError](cause); ok {
		code = uint64(ae.ErrorCode)
	}
	rl.stream.sendClose(code, cause.Error())
	rl.stream.end(cause) // down stops
}

// down is the pump of the Pool's side of the stream: it copies what the
// Pool sent to the child's control stream, and closes the connection as
// the Pool says. It runs only while there is something to copy, so that
// an idle child costs no goroutine here but up's.
func (rl *relay) down() {
	for {
		b, err := rl.stream.poll()
		if err == errIdle {
			return
		}
		if len(b) > 0 {
			rl.str.Write(b) // a failure ends the connection, which up reports
		}
		if errors.Is(err, io.EOF) {
			// poll gives the fin once; the connection's end starts the
			// pump again.
			rl.str.Close()
			continue
		}
		if err != nil {
			var ae *quic.ApplicationError
			if !errors.As(err, &ae) {
				ae = &quic.ApplicationError{ErrorCode: tunnel.CloseShutdown, ErrorMessage: "parent shutting down"}
			}
			rl.conn.CloseWithError(ae.ErrorCode, ae.ErrorMessage)
			return
		}
	}
}
