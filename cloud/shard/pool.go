package shard

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"runtime"
	"sync"
	"time"

	"github.com/ote-edge/ote/appliance/backoff"
	"github.com/ote-edge/ote/cloud/profiling"
	"github.com/ote-edge/ote/cloud/tunnel"
)

// DefaultNice is the niceness a level's shards run at by default,
// relative to the level's own (Config.Nice).
const DefaultNice = -5

// Config configures a Pool.
type Config struct {
	Listen string // the tunnel's UDP address
	Shards int    // how many processes hold its children: 2 or more
	Root   *x509.Certificate
	// ResetKey, MaxHandshakes and KeepAlive are the tunnel's (see
	// tunnel.ListenConfig). Each shard takes its share of MaxHandshakes.
	ResetKey      [32]byte
	MaxHandshakes int
	KeepAlive     time.Duration
	// MemoryLimit, if set, bounds each shard's memory (GOMEMLIMIT, with
	// GOGC off): shard i's bound is MemoryLimit less i/(4·Shards) of it
	// (shardMemoryLimit).
	MemoryLimit int64
	// Nice is added to this process's niceness for the shards' (see
	// StartNiced; DefaultNice is the command's default): below 0, they
	// run ahead of it and of the API server. Lowering it needs
	// CAP_SYS_NICE; without it, the shards run at this process's.
	Nice int
	// Command makes shard i's process, which runs Main; default: this
	// executable's tunnel-shard command. Its Stderr, if nil, is this
	// process's.
	Command func(shard int) *exec.Cmd
	// ProfilingListen, if set, is the controller's profiling address:
	// shard i serves its own profiles on the port i+1 above it.
	ProfilingListen string
	Log             *slog.Logger
}

// shardProcs is each of n shards' GOMAXPROCS on a machine of cpus: the
// shards share the CPUs. A process whose runtime spreads a few hundred
// packets a second over every CPU spends much of its time waking threads
// and looking for work; a shard that runs on fewer keeps its goroutines'
// hand-offs within one thread.
func shardProcs(cpus, n int) int { return max(1, cpus/n) }

// Pool is the controller's side of a sharded tunnel: it binds the port,
// keeps a shard process running for each of its sockets, and hands the
// connections they relay to Accept.
type Pool struct {
	cfg   Config
	addr  net.Addr
	files []*os.File // the sockets, kept open across shards' restarts
	conns chan *relayed

	mu        sync.Mutex
	cert      *certificate
	certReady chan struct{}
	controls  map[int]channel // the running shards' channels

	stop     chan struct{}
	stopOnce sync.Once
	shards   sync.WaitGroup
}

// MaxShards bounds Config.Shards.
const MaxShards = tunnel.MaxShards

// Listen binds the tunnel's port as cfg.Shards sockets. Run starts the
// shards.
func Listen(cfg Config) (*Pool, error) {
	if cfg.Shards < 2 || cfg.Shards > MaxShards {
		return nil, fmt.Errorf("tunnel shards: %d: give 2 to %d", cfg.Shards, MaxShards)
	}
	if cfg.Root == nil {
		return nil, errors.New("tunnel shards: no root CA")
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxHandshakes <= 0 {
		cfg.MaxHandshakes = tunnel.DefaultMaxHandshakes
	}
	if cfg.Command == nil {
		self, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("tunnel shards: %w", err)
		}
		cfg.Command = func(int) *exec.Cmd { return exec.Command(self, "tunnel-shard") }
	}
	socks, err := tunnel.ShardSockets(cfg.Listen, cfg.Shards)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", cfg.Listen, err)
	}
	p := &Pool{
		cfg: cfg, addr: socks[0].LocalAddr(), conns: make(chan *relayed, 64),
		certReady: make(chan struct{}), controls: map[int]channel{}, stop: make(chan struct{}),
	}
	for _, s := range socks {
		f, err := s.File()
		s.Close()
		if err != nil {
			p.closeFiles()
			return nil, fmt.Errorf("listen %s: %w", cfg.Listen, err)
		}
		p.files = append(p.files, f)
	}
	return p, nil
}

func (p *Pool) closeFiles() {
	for _, f := range p.files {
		f.Close()
	}
}

// Addr is the tunnel's bound address.
func (p *Pool) Addr() net.Addr { return p.addr }

// Run keeps the shards running until ctx ends or Close.
func (p *Pool) Run(ctx context.Context) error {
	p.mu.Lock()
	select {
	case <-p.stop:
		p.mu.Unlock()
		return nil // closed already
	default:
	}
	for i := range p.cfg.Shards {
		p.shards.Go(func() { p.keep(i) })
	}
	p.mu.Unlock()
	select {
	case <-ctx.Done():
		p.Close()
	case <-p.stop:
	}
	return nil
}

// Close stops the shards, which close the connections left as a
// parent's shutdown, and waits for them.
func (p *Pool) Close() error {
	p.mu.Lock()
	p.stopOnce.Do(func() { close(p.stop) })
	p.mu.Unlock()
	p.shards.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.files != nil {
		p.closeFiles()
		p.files = nil
	}
	return nil
}

// Accept returns the next child's connection a shard relays.
func (p *Pool) Accept(ctx context.Context) (tunnel.Conn, error) {
	select {
	case r := <-p.conns:
		return r, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-p.stop:
		return nil, net.ErrClosed
	}
}

// SetCertificate is the chain the shards serve from now on.
func (p *Pool) SetCertificate(cert *tls.Certificate) {
	c, err := marshalCertificate(cert)
	if err != nil {
		p.cfg.Log.Error("tunnel shards: certificate", "err", err)
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cert == nil {
		close(p.certReady)
	}
	p.cert = &c
	for i, ch := range p.controls {
		if err := ch.sendJSON(kindCertificate, 0, &c); err != nil {
			p.cfg.Log.Warn("tunnel shard: new certificate", "shard", i, "err", err)
		}
	}
}

// shardMemoryLimit is shard i's memory bound, of n, under limit. Shards
// share the children evenly and grow alike: with one bound, all would
// collect at once, each as long as the others, on the same cores, and
// the children of all of them would wait. At 46k children, three shards
// under one bound of 3 GiB collected within 26 s of each other, marks of
// 4.7, 9.2 and 15.4 s, and 15k children's tunnels timed out. Bounds
// spread over a quarter of the limit make them reach their bounds apart.
func shardMemoryLimit(limit int64, i, n int) int64 {
	return limit - limit*int64(i)/int64(4*n)
}

// keep runs shard i, again and again, until the Pool stops.
func (p *Pool) keep(i int) {
	select {
	case <-p.certReady:
	case <-p.stop:
		return
	}
	b := backoff.Backoff{Min: time.Second, Max: 30 * time.Second, Jitter: 0.2}
	for {
		start := time.Now()
		err := p.run(i)
		select {
		case <-p.stop:
			return
		default:
		}
		if time.Since(start) > time.Minute {
			b.Reset()
		}
		p.cfg.Log.Error("tunnel shard exited; its children reconnect once it is back", "shard", i, "err", err)
		wait := time.NewTimer(b.Next())
		select {
		case <-wait.C:
		case <-p.stop:
			wait.Stop()
			return
		}
	}
}

// run starts shard i's process and serves its channel until the
// process exits, or stops it when the Pool stops.
func (p *Pool) run(i int) error {
	conn, peer, err := socketPair()
	if err != nil {
		return err
	}
	ch := newChannel(conn)
	defer conn.Close()
	cmd := p.cfg.Command(i)
	// Close closes the files only once every shard has stopped.
	cmd.ExtraFiles = []*os.File{p.files[i], peer} // fdSocket, fdChannel
	if cmd.Stderr == nil {
		cmd.Stderr = os.Stderr
	}
	niceErr, err := StartNiced(cmd, p.cfg.Nice)
	peer.Close()
	if err != nil {
		return fmt.Errorf("start: %w", err)
	}
	if niceErr != nil {
		p.cfg.Log.Warn("tunnel shard runs at this process's niceness", "shard", i, "err", niceErr)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	p.mu.Lock()
	su := &setup{
		Shards: p.cfg.Shards, Shard: i, ResetKey: p.cfg.ResetKey,
		MaxHandshakes: (p.cfg.MaxHandshakes + p.cfg.Shards - 1) / p.cfg.Shards,
		KeepAlive:     p.cfg.KeepAlive, MemoryLimit: shardMemoryLimit(p.cfg.MemoryLimit, i, p.cfg.Shards),
		Root: p.cfg.Root.Raw, Certificate: *p.cert, Procs: shardProcs(runtime.NumCPU(), p.cfg.Shards),
	}
	if p.cfg.ProfilingListen != "" {
		su.Profiling = profiling.Beside(p.cfg.ProfilingListen, i+1)
	}
	err = ch.sendJSON(kindSetup, 0, su)
	if err == nil {
		p.controls[i] = ch
	}
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.controls, i)
		p.mu.Unlock()
	}()
	if err != nil {
		cmd.Process.Kill()
		return fmt.Errorf("setup: %v (%v)", err, <-exited)
	}
	received := make(chan struct{})
	go func() {
		p.receive(i, ch)
		close(received)
	}()
	select {
	case err := <-exited:
		conn.Close()
		<-received
		return err
	case <-p.stop:
	}
	// What was sent stays in the socket for the shard to read; then it
	// closes the connections left, as a parent's shutdown, and exits.
	conn.(*net.UnixConn).CloseWrite()
	select {
	case err = <-exited:
	case <-time.After(15 * time.Second):
		cmd.Process.Kill()
		err = <-exited
	}
	conn.Close()
	<-received
	return err
}

// receive serves shard i's side of its channel: the connections it
// hands over and what it relays for them, until the channel closes. The
// connections left then end with the shard.
func (p *Pool) receive(i int, ch channel) {
	var mu sync.Mutex
	conns := map[uint32]*relayed{}
	forget := func(id uint32) {
		mu.Lock()
		delete(conns, id)
		mu.Unlock()
	}
	r := bufio.NewReaderSize(ch.c, 64<<10)
	var err error
	for {
		var kind byte
		var id uint32
		var payload []byte
		kind, id, payload, err = readFrame(r)
		if err != nil {
			break
		}
		if kind == kindOpen {
			var o open
			if err := json.Unmarshal(payload, &o); err != nil {
				p.cfg.Log.Warn("tunnel shard: open", "shard", i, "err", err)
				continue
			}
			c, err := newRelayed(ch, id, &o)
			if err != nil {
				p.cfg.Log.Warn("tunnel shard: a child's connection", "shard", i, "err", err)
				ch.sendClose(id, uint64(tunnel.CloseProtocol), err.Error())
				continue
			}
			c.forget = func() { forget(id) }
			mu.Lock()
			conns[id] = c
			mu.Unlock()
			select {
			case p.conns <- c:
			case <-p.stop:
				c.CloseWithError(tunnel.CloseShutdown, "parent shutting down")
			}
			continue
		}
		mu.Lock()
		c := conns[id]
		mu.Unlock()
		if c == nil || c.deliver(kind, payload) {
			continue // closed here already, or delivered
		}
		if kind == kindClose {
			forget(id)
			c.ended(closedAt(payload))
		}
	}
	if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
		err = fmt.Errorf("tunnel shard %d exited", i)
	} else {
		err = fmt.Errorf("tunnel shard %d: %w", i, err)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, c := range conns {
		c.ended(err)
	}
}
