package tests

import (
	"bufio"
	"cmp"
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
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/ote-edge/ote/appliance/backoff"
	"github.com/ote-edge/ote/cloud/enrollment"
	"github.com/ote-edge/ote/cloud/gcpace"
	"github.com/ote-edge/ote/cloud/pki"
	"github.com/ote-edge/ote/cloud/shard"
	"github.com/ote-edge/ote/cloud/tunnel"
)

// leafWorkerEnv holds a leaf worker's configuration (JSON): with it set,
// this test binary is one process of the leaves benchmark's load
// generator rather than a test run.
const leafWorkerEnv = "OTE_LEAF_WORKER"

func TestMain(m *testing.M) {
	if cfg := os.Getenv(leafWorkerEnv); cfg != "" {
		log := slog.New(slog.NewTextHandler(os.Stderr, nil))
		if err := runLeafWorker(context.Background(), cfg, os.Stdin, os.Stdout, log); err != nil {
			log.Error("leaf worker", "err", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// leafWorkerConfig is what one process of the load generator holds: the
// leaves From to To-1, every one its own QUIC connection over the
// process's one UDP socket.
type leafWorkerConfig struct {
	Kubeconfig string        // the controller's admin kubeconfig: the tree's CA, to issue the leaves' identities
	Tunnel     string        // the controller's UDP address
	From, To   int           // leaf-From … leaf-(To-1)
	LostAfter  time.Duration // the leaves' lostAfter
	Ceiling    float64       // the busy share of CPU to pace dials under; 1 or more: unpaced
	Step       float64       // dials per second the pacer adds each second under it
	ProfileDir string        // where to save CPU profiles of the connect and of the hold, and the heap at the end, or ""
	Name       string        // the profiles' prefix
}

// leafWorkerStatus is what a leaf worker writes to its standard output,
// one JSON line a second once its leaves' identities are ready, and one
// with Final in answer to "report".
type leafWorkerStatus struct {
	Port    string           // its UDP socket's local port
	Held    int              // leaves holding their tunnel now
	Dials   int64            // dials that connected, redials included
	Retries int64            // dials that failed and were tried again
	Redials int64            // dials of leaves that had lost their tunnel
	Lost    int64            // tunnels lost so far
	Err     string           `json:",omitempty"` // why a leaf gave up: the run has failed
	Final   *leafWorkerFinal `json:",omitempty"`
}

// leafWorkerFinal is a leaf worker's account at the end of a run.
type leafWorkerFinal struct {
	PacketsSent, PacketsReceived, PacketsLost uint64 // the sum over its leaves' connections
	PacketsSentMost                           uint64 // the most one connection sent
	HeapLive                                  uint64 // bytes live after a collection
	Losses                                    []leafLoss
}

// leafLoss is one lost tunnel: when, and why.
type leafLoss struct {
	At    time.Time
	Cause string
}

// runLeafWorker is one process of the load generator. It issues its
// leaves' identities, reports its port, and on the command "dial" on in
// connects them all. A leaf that loses its tunnel dials again after a
// box's backoff until the command "final"; after that, losses stand.
// "report" stops and answers with the account; the end of in closes
// every connection and ends the process.
func runLeafWorker(ctx context.Context, cfgJSON string, in io.Reader, out io.Writer, log *slog.Logger) error {
	var cfg leafWorkerConfig
	if err := json.Unmarshal([]byte(cfgJSON), &cfg); err != nil {
		return fmt.Errorf("%s: %w", leafWorkerEnv, err)
	}
	if cfg.To <= cfg.From {
		return fmt.Errorf("%s: no leaves from %d to %d", leafWorkerEnv, cfg.From, cfg.To)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	rc, err := clientcmd.BuildConfigFromFlags("", cfg.Kubeconfig)
	if err != nil {
		return err
	}
	kc, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return err
	}
	ca, err := (enrollment.Store{Client: kc}).TreeCA(ctx, false)
	if err != nil {
		return err
	}
	n := cfg.To - cfg.From
	certs := make([]tls.Certificate, n)
	var issuing sync.WaitGroup
	issueErrs := make([]error, 4)
	for g := range issueErrs {
		issuing.Go(func() {
			for i := g; i < n && issueErrs[g] == nil; i += len(issueErrs) {
				// Valid for a day: a run at 100k lasts over an hour, and a
				// leaf that redials with an expired one is refused.
				certPEM, keyPEM, err := ca.Issue(pki.Request{CommonName: fmt.Sprintf("leaf-%05d", cfg.From+i), Client: true, Validity: 24 * time.Hour})
				if err == nil {
					certs[i], err = tls.X509KeyPair(certPEM, keyPEM)
					certs[i].Leaf = nil // crypto/tls parses it when it needs it, and keeps nothing
				}
				issueErrs[g] = err
			}
		})
	}
	issuing.Wait()
	if err := errors.Join(issueErrs...); err != nil {
		return err
	}

	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return err
	}
	// As large a receive buffer as a parent's: the leaves' socket takes
	// as many packets.
	tunnel.GrowReadBuffer(udp, tunnel.DefaultReadBuffer)
	tr := &quic.Transport{Conn: udp}
	defer tr.Close()
	raddr, err := net.ResolveUDPAddr("udp", cfg.Tunnel)
	if err != nil {
		return err
	}
	if cfg.ProfileDir != "" {
		f, err := os.Create(filepath.Join(cfg.ProfileDir, cfg.Name+"-cpu.pprof"))
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}

	w := &leafWorker{cfg: cfg, certs: certs, ca: ca.Cert, tr: tr, raddr: raddr, log: log,
		conns: make([]*quic.Conn, n), redialed: make([]int, n), queue: make(chan int, n)}
	_, w.port, _ = net.SplitHostPort(udp.LocalAddr().String())
	enc := json.NewEncoder(out)
	var encMu sync.Mutex
	write := func(st leafWorkerStatus) error {
		encMu.Lock()
		defer encMu.Unlock()
		return enc.Encode(st)
	}
	if err := write(w.snapshot()); err != nil {
		return err
	}
	var running sync.WaitGroup
	defer running.Wait()
	defer cancel()
	// The worker runs with GOGC off (startLeafWorkers): its collections
	// start half way to its bound, as a shard's do.
	running.Go(func() { gcpace.Run(ctx, time.Second, log) })
	running.Go(func() {
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		logged := 0 // losses logged so far
		for n := 1; ; n++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				st := w.snapshot()
				if write(st) != nil {
					cancel()
				}
				if n%60 == 0 {
					// Why the last minute's tunnels were lost, so that a run
					// stopped before its report still tells.
					var causes map[string]int
					causes, logged = w.causesSince(logged)
					log.Info("leaves", "held", st.Held, "dials", st.Dials, "redials", st.Redials, "lost", st.Lost, "causes", fmt.Sprint(causes))
				}
			}
		}
	})
	pctx, stopPacing := context.WithCancel(ctx)
	defer stopPacing()
	lines := bufio.NewScanner(in)
	for lines.Scan() {
		switch cmd := lines.Text(); cmd {
		case "dial":
			if cfg.Ceiling < 1 {
				w.pacer = newDialPacer(cfg.Ceiling, cfg.Step, func(format string, args ...any) { log.Info(fmt.Sprintf(format, args...)) })
				running.Go(func() {
					if err := w.pacer.Run(pctx); err != nil {
						w.fail(fmt.Errorf("pacing dials: %w", err))
					}
				})
			}
			for range 32 {
				running.Go(func() { w.dialer(ctx) })
			}
			for i := range n {
				w.queue <- i
			}
		case "final":
			w.final.Store(true)
			stopPacing()
			if cfg.ProfileDir != "" {
				// From here on the leaves hold their tunnels: the hold's
				// profile apart from the connect's.
				pprof.StopCPUProfile()
				f, err := os.Create(filepath.Join(cfg.ProfileDir, cfg.Name+"-hold-cpu.pprof"))
				if err != nil {
					return err
				}
				if err := pprof.StartCPUProfile(f); err != nil {
					f.Close()
					return err
				}
				defer func() {
					pprof.StopCPUProfile()
					f.Close()
				}()
			}
		case "report":
			stopPacing()
			st := w.snapshot()
			st.Final = w.account()
			runtime.GC()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			st.Final.HeapLive = ms.HeapAlloc
			if err := write(st); err != nil {
				return err
			}
		default:
			return fmt.Errorf("unknown command %q", cmd)
		}
	}
	cancel()
	w.final.Store(true)
	w.mu.Lock()
	for _, conn := range w.conns {
		if conn != nil {
			conn.CloseWithError(0, "")
		}
	}
	w.mu.Unlock()
	if cfg.ProfileDir != "" {
		// The heap: what a collection leaves live.
		debug.FreeOSMemory()
		f, err := os.Create(filepath.Join(cfg.ProfileDir, cfg.Name+"-heap.pprof"))
		if err == nil {
			err = pprof.WriteHeapProfile(f)
			f.Close()
		}
		if err != nil {
			return err
		}
	}
	return lines.Err()
}

// leafWorker holds one process's leaves.
type leafWorker struct {
	cfg   leafWorkerConfig
	certs []tls.Certificate
	ca    *x509.Certificate
	tr    *quic.Transport
	raddr *net.UDPAddr
	log   *slog.Logger
	pacer *dialPacer // nil: unpaced
	queue chan int   // leaves to dial, by index
	final atomic.Bool

	dials, retries, redials atomic.Int64

	mu       sync.Mutex
	conns    []*quic.Conn // each leaf's latest tunnel
	redialed []int        // how often each leaf lost its tunnel and dialed again
	losses   []leafLoss   // every lost tunnel: the leaves held are the dials less these
	err      error
	port     string
}

// dialer connects the leaves it takes from the queue, each with up to 20
// tries a box's backoff apart, until ctx ends.
func (w *leafWorker) dialer(ctx context.Context) {
	for {
		var i int
		select {
		case <-ctx.Done():
			return
		case i = <-w.queue:
		}
		if w.final.Load() {
			continue
		}
		wait := backoff.Backoff{Min: time.Second, Max: 30 * time.Second, Jitter: 0.2}
		w.mu.Lock()
		again := w.conns[i] != nil
		w.mu.Unlock()
		if again && wait.Wait(ctx) != nil {
			return
		}
		var conn *quic.Conn
		var err error
		for try := range 20 {
			if try > 0 {
				w.retries.Add(1)
				if err = wait.Wait(ctx); err != nil {
					return
				}
			}
			if err = w.pacer.wait(ctx); err != nil {
				return
			}
			if conn, err = w.connect(ctx, i); err == nil {
				break
			}
		}
		if err != nil {
			w.fail(fmt.Errorf("leaf-%05d, 20 tries: %w", w.cfg.From+i, err))
			continue
		}
		w.dials.Add(1)
		if again {
			w.redials.Add(1)
		}
		w.mu.Lock()
		w.conns[i] = conn
		w.mu.Unlock()
		context.AfterFunc(conn.Context(), func() { w.lose(i, conn) })
	}
}

// lose records a lost tunnel and, until the command "final", queues its
// leaf to dial again.
func (w *leafWorker) lose(i int, conn *quic.Conn) {
	w.mu.Lock()
	defer w.mu.Unlock()
	cause := fmt.Sprint(context.Cause(conn.Context()))
	w.losses = append(w.losses, leafLoss{time.Now(), cause})
	if w.final.Load() {
		// Final losses are few, and each is worth setting beside the
		// controller's log.
		st := conn.ConnectionStats()
		w.log.Warn("lost", "leaf", fmt.Sprintf("leaf-%05d", w.cfg.From+i), "cause", cause,
			"rtt", st.SmoothedRTT, "sent", st.PacketsSent, "received", st.PacketsReceived, "lostPackets", st.PacketsLost)
		return
	}
	if w.redialed[i]++; w.redialed[i] > 10 {
		w.err = cmp.Or(w.err, fmt.Errorf("leaf-%05d lost its tunnel %d times", w.cfg.From+i, w.redialed[i]))
		return
	}
	w.queue <- i // it has room for every leaf, and each is in it at most once
}

// connect dials leaf i and exchanges Hello and Welcome on its tunnel.
func (w *leafWorker) connect(ctx context.Context, i int) (*quic.Conn, error) {
	dctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	conn, err := w.tr.Dial(dctx, w.raddr, tunnel.ClientTLS(w.certs[i], w.ca), tunnel.ChildQUICConfig(w.cfg.LostAfter))
	if err != nil {
		return nil, err
	}
	str, err := conn.OpenStreamSync(dctx)
	if err == nil {
		if err = tunnel.WriteFrame(str, &tunnel.Hello{CapabilityVersion: tunnel.CapabilityVersion, AgentVersion: "loadgen"}); err == nil {
			_, err = tunnel.NewReader(str).Read()
		}
	}
	if err != nil {
		conn.CloseWithError(0, "")
		return nil, err
	}
	return conn, nil
}

// causesSince counts the causes of the losses after the first k, and
// returns how many there are in all.
func (w *leafWorker) causesSince(k int) (map[string]int, int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	causes := map[string]int{}
	for _, l := range w.losses[k:] {
		causes[l.Cause]++
	}
	return causes, len(w.losses)
}

// fail keeps the first reason a leaf gave up.
func (w *leafWorker) fail(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.err = cmp.Or(w.err, err)
}

// snapshot is the worker's counts now.
func (w *leafWorker) snapshot() leafWorkerStatus {
	w.mu.Lock()
	defer w.mu.Unlock()
	st := leafWorkerStatus{Port: w.port, Dials: w.dials.Load(), Retries: w.retries.Load(),
		Redials: w.redials.Load(), Lost: int64(len(w.losses))}
	st.Held = int(st.Dials - st.Lost)
	if w.err != nil {
		st.Err = w.err.Error()
	}
	return st
}

// account sums what the leaves' connections sent and received,
// handshakes and loss recovery included: it tells a quiet hold from a
// storm of probes.
func (w *leafWorker) account() *leafWorkerFinal {
	w.mu.Lock()
	defer w.mu.Unlock()
	f := &leafWorkerFinal{Losses: slices.Clone(w.losses)}
	for _, conn := range w.conns {
		if conn == nil {
			continue
		}
		st := conn.ConnectionStats()
		f.PacketsSent += st.PacketsSent
		f.PacketsReceived += st.PacketsReceived
		f.PacketsLost += st.PacketsLost
		f.PacketsSentMost = max(f.PacketsSentMost, st.PacketsSent)
	}
	return f
}

// leafWorkers is the load generator as the benchmark sees it: processes
// of this test binary, each holding a share of the leaves.
type leafWorkers struct {
	procs []*leafWorkerProc
}

// leafWorkerProc is one of them.
type leafWorkerProc struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	share  int
	exited chan struct{}
	finals chan *leafWorkerFinal

	mu   sync.Mutex
	last *leafWorkerStatus // nil until its identities are ready
}

// startLeafWorkers starts procs workers that share cfg's leaves From to
// To and returns once every one is ready to dial. Each runs without a
// garbage collection goal (GOGC off) under a memory bound of its own: the
// runtime forces a collection every two minutes whenever GOGC is on, and
// one process holding 100k leaves has a heap near 4 GB, whose collections
// took 7 to 24 s on the two cores the controller uses too. A worker's
// stderr (its pacer's log, and its GC trace under GODEBUG=gctrace=1) goes
// to a file in cfg.ProfileDir, if set. Each keeps the runtime's
// GOMAXPROCS unless OTE_LOADGEN_GOMAXPROCS is set: at 1, one worker's
// collection of 3.2 GB at 27k leaves took 8 s of wall time, and its
// socket dropped what came meanwhile; at 2, two workers' collections at
// once (6.8 and 9.2 s, at 70k leaves) left the shards 0.3 to 0.45 of a
// core, and 31k tunnels were lost. Each
// runs at nice above the benchmark's niceness (shard.StartNiced), as the
// shards do.
func startLeafWorkers(b *testing.B, cfg leafWorkerConfig, procs, nice int) *leafWorkers {
	b.Helper()
	self, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	ws := &leafWorkers{}
	leaves := cfg.To - cfg.From
	perLeaf := int64(80) // KiB of memory bound per leaf; see below
	if v, err := strconv.ParseInt(os.Getenv("OTE_LOADGEN_KIB_PER_LEAF"), 10, 64); err == nil && v > 0 {
		perLeaf = v
	}
	for k := range procs {
		c := cfg
		c.From, c.To = cfg.From+leaves*k/procs, cfg.From+leaves*(k+1)/procs
		c.Name = fmt.Sprintf("loadgen-%d", k)
		c.Step = cfg.Step / float64(procs) // together they step as one pacer
		js, err := json.Marshal(c)
		if err != nil {
			b.Fatal(err)
		}
		p := &leafWorkerProc{share: c.To - c.From, exited: make(chan struct{}), finals: make(chan *leafWorkerFinal, 1)}
		p.cmd = exec.Command(self, "-test.run=^$")
		// About 42 KiB live a leaf, and the bound counts more than the
		// heap: at 64 KiB a leaf, a process's heap goal was down to 1.9 GB
		// with 1.4 GB live at 33k leaves, and it would have collected
		// ever more often towards 50k. At 80 KiB, two processes of 50k
		// are bound at 8.1 GiB, which fits beside the controller and its
		// API server (7 and 2.3 GB at 70k). Process k's bound is k/(4N)
		// higher, so that processes that grow alike do not collect at
		// once: at 58k leaves, two under one bound began their
		// collections 1 and 5 s apart, each marking for 6 s, and the
		// packets of all the leaves waited. OTE_LOADGEN_KIB_PER_LEAF
		// sets the 80 KiB: at 37 to 40k leaves a process had 1.6 GB
		// live, a heap goal of 1.8 to 2.3 GB under it, and collected
		// every one to two minutes, each time for 4 to 13 s; at 120 KiB,
		// 16 to 19 minutes apart, and two processes of 40k left the
		// machine about 2 GB of its 24.
		limit := int64(c.To-c.From)*perLeaf<<10 + 256<<20
		limit += limit * int64(k) / int64(4*procs)
		p.cmd.Env = append(os.Environ(), leafWorkerEnv+"="+string(js), "GOGC=off", "GOMEMLIMIT="+strconv.FormatInt(limit, 10))
		if v := os.Getenv("OTE_LOADGEN_GOMAXPROCS"); v != "" {
			p.cmd.Env = append(p.cmd.Env, "GOMAXPROCS="+v)
		}
		p.cmd.Stderr = os.Stderr
		if cfg.ProfileDir != "" {
			f, err := os.Create(filepath.Join(cfg.ProfileDir, c.Name+".log"))
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close() // the child has its own copy
			p.cmd.Stderr = f
		}
		if p.stdin, err = p.cmd.StdinPipe(); err != nil {
			b.Fatal(err)
		}
		stdout, err := p.cmd.StdoutPipe()
		if err != nil {
			b.Fatal(err)
		}
		niceErr, err := shard.StartNiced(p.cmd, nice)
		if err != nil {
			b.Fatal(err)
		}
		if niceErr != nil {
			b.Logf("%s runs at the benchmark's niceness: %v", c.Name, niceErr)
		}
		go func() {
			defer close(p.exited)
			dec := json.NewDecoder(stdout)
			for {
				var st leafWorkerStatus
				if dec.Decode(&st) != nil {
					break
				}
				p.mu.Lock()
				p.last = &st
				p.mu.Unlock()
				if st.Final != nil {
					p.finals <- st.Final
				}
			}
			p.cmd.Wait()
		}()
		b.Cleanup(func() {
			p.stdin.Close()
			select {
			case <-p.exited:
			case <-time.After(time.Minute):
				p.cmd.Process.Kill()
				<-p.exited
			}
		})
		ws.procs = append(ws.procs, p)
	}
	for _, p := range ws.procs {
		for p.status() == nil {
			select {
			case <-p.exited:
				b.Fatalf("leaf worker exited before it was ready: %v", p.cmd.ProcessState)
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return ws
}

func (p *leafWorkerProc) status() *leafWorkerStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.last
}

// send gives every worker a command.
func (ws *leafWorkers) send(b *testing.B, cmd string) {
	b.Helper()
	for _, p := range ws.procs {
		if _, err := io.WriteString(p.stdin, cmd+"\n"); err != nil {
			b.Fatalf("leaf worker, %s: %v", cmd, err)
		}
	}
}

// sum adds up the workers' latest counts, and fails b if one has failed
// or exited.
func (ws *leafWorkers) sum(b *testing.B) (total leafWorkerStatus, allHeld bool) {
	b.Helper()
	allHeld = true
	for _, p := range ws.procs {
		select {
		case <-p.exited:
			b.Fatalf("leaf worker exited: %v", p.cmd.ProcessState)
		default:
		}
		st := p.status()
		if st.Err != "" {
			b.Fatal(st.Err)
		}
		total.Held += st.Held
		total.Dials += st.Dials
		total.Retries += st.Retries
		total.Redials += st.Redials
		total.Lost += st.Lost
		allHeld = allHeld && st.Held == p.share
	}
	return total, allHeld
}

// report stops the workers' dialing and gathers their accounts.
func (ws *leafWorkers) report(b *testing.B) []*leafWorkerFinal {
	b.Helper()
	ws.send(b, "report")
	var finals []*leafWorkerFinal
	for _, p := range ws.procs {
		select {
		case f := <-p.finals:
			finals = append(finals, f)
		case <-p.exited:
			b.Fatalf("leaf worker exited: %v", p.cmd.ProcessState)
		case <-time.After(time.Minute):
			b.Fatal("leaf worker: no report within a minute")
		}
	}
	return finals
}

func (ws *leafWorkers) pids() []int {
	var pids []int
	for _, p := range ws.procs {
		pids = append(pids, p.cmd.Process.Pid)
	}
	return pids
}

func (ws *leafWorkers) ports() []string {
	var ports []string
	for _, p := range ws.procs {
		ports = append(ports, p.status().Port)
	}
	return ports
}

// signal sends every worker sig.
func (ws *leafWorkers) signal(sig syscall.Signal) {
	for _, p := range ws.procs {
		p.cmd.Process.Signal(sig)
	}
}
