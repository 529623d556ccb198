package tests

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/pager"

	"github.com/ote-edge/ote/appliance/backoff"
	"github.com/ote-edge/ote/cloud/crds"
	"github.com/ote-edge/ote/cloud/enrollment"
	"github.com/ote-edge/ote/cloud/pki"
	"github.com/ote-edge/ote/cloud/tunnel"
)

// BenchmarkLeavesPerController connects OTE_LEAVES (default 1000)
// simulated leaves to one ote-cloud serve, every one a real QUIC
// connection with its own certificate, all over one UDP socket
// (quic.Transport), each holding its tunnel after Hello/Welcome. It
// reports the controller's resident memory per leaf (ote-cloud alone;
// the API server is a separate process) and the time to connect them all.
// With OTE_PROFILE_DIR set it saves the controller's heap and goroutine
// profiles there once all are connected, a CPU profile of the first
// five seconds of connecting, and the controller's log at the end.
// OTE_LOST_AFTER sets the leaves' lostAfter (default 30s, a box's): the
// controller pings each every tunnel.ParentKeepAlive, and a leaf pings
// once half of it has passed in silence; OTE_PING_CHILDREN sets the
// controller's --ping-children, for leaves with a longer lostAfter.
// OTE_CPU_CEILING paces the dials to keep the machine's busy share of CPU
// under it (see dialPacer): it tells how many a controller holds from how
// many survive a storm of connects.
// A leaf that loses its tunnel while others are still connecting dials
// again after a box's backoff; the benchmark reports those losses and the
// redials apart, and once every leaf holds a tunnel, losses are final.
// OTE_HOLD keeps them all connected that much longer before counting the
// ones still held, and reports the CPU each process spent while they only
// kept their tunnels alive. OTE_STALL=controller:10s (or leaves:6s)
// stops that process for so long at the start of the hold, as a long
// garbage collection or a virtual machine's pause would.
//
//	make build kube && OTE_LEAVES=1000 OTE_OUT=$PWD/out/amd64 go test ./tests -run '^$' -bench LeavesPerController -benchtime 1x
func BenchmarkLeavesPerController(b *testing.B) {
	leaves := 1000
	if v, err := strconv.Atoi(os.Getenv("OTE_LEAVES")); err == nil && v > 0 {
		leaves = v
	}
	lostAfter := tunnel.DefaultLostAfter
	if v, err := time.ParseDuration(os.Getenv("OTE_LOST_AFTER")); err == nil && v >= time.Second {
		lostAfter = v
	}
	// The load generator holds as many connections as the controller and
	// shares its machine: about 38 KiB of live heap a leaf, near 4 GB at
	// 100k. With a GOGC goal its heap stays under one and a half times
	// that, which leaves the rest of the memory to the controller and its
	// API server, with a bound in case it needs more. The price: the
	// runtime forces a collection every two minutes whenever GOGC is on,
	// and at 75k to 82k leaves each cost 8 to 27 CPU-seconds over 7 to 24 s.
	// Without a goal (GOGC off) there are none until the bound, and one
	// run held 100k that way, but its heap grows to the bound, and its
	// repeat ran the machine out of memory.
	defer debug.SetGCPercent(debug.SetGCPercent(50))
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(10 << 30))
	profiling := freeAddr(b)
	args := []string{"--data-dir", b.TempDir(), "--api-listen", freeAddr(b), "--profiling-listen", profiling}
	if v := os.Getenv("OTE_PING_CHILDREN"); v != "" {
		args = append(args, "--ping-children", v)
	}
	c := startCloud(b, args...)
	rc, _ := clientcmd.BuildConfigFromFlags("", c.kubeconfig)
	rc.QPS, rc.Burst = 1000, 1000
	ctx := context.Background()
	var figures []string
	report := func(v float64, unit string) {
		b.ReportMetric(v, unit)
		figures = append(figures, fmt.Sprintf("%.4g %s", v, unit))
	}
	kc := kubernetes.NewForConfigOrDie(rc)
	ca, err := (enrollment.Store{Client: kc}).TreeCA(ctx, false)
	if err != nil {
		b.Fatal(err)
	}
	ecs := dynamic.NewForConfigOrDie(rc).Resource(crds.EdgeClusters)

	// Register the leaves and issue their identities, as enrollment would.
	certs := make([]tls.Certificate, leaves)
	work := make(chan int)
	var wg sync.WaitGroup
	var firstErr error
	var mu sync.Mutex
	for range 16 {
		wg.Go(func() {
			for i := range work {
				name := fmt.Sprintf("leaf-%05d", i)
				obj := &unstructured.Unstructured{Object: map[string]any{
					"apiVersion": crds.Group + "/" + crds.Version, "kind": "EdgeCluster",
					"metadata": map[string]any{"name": name, "labels": map[string]any{"site": fmt.Sprintf("site-%d", i%100)}},
					"spec":     map[string]any{},
				}}
				_, err := ecs.Create(ctx, obj, metav1.CreateOptions{})
				if err == nil {
					var certPEM, keyPEM []byte
					// Valid for a day: a run at 100k lasts over an hour, and
					// a leaf that redials with an expired one is refused.
					if certPEM, keyPEM, err = ca.Issue(pki.Request{CommonName: name, Client: true, Validity: 24 * time.Hour}); err == nil {
						certs[i], err = tls.X509KeyPair(certPEM, keyPEM)
						certs[i].Leaf = nil // crypto/tls parses it when it needs it, and keeps nothing
					}
				}
				if err != nil {
					mu.Lock()
					firstErr = err
					mu.Unlock()
				}
			}
		})
	}
	for i := range leaves {
		work <- i
	}
	close(work)
	wg.Wait()
	if firstErr != nil {
		b.Fatal(firstErr)
	}

	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	// As large a receive buffer as a parent's: the leaves' socket takes
	// as many packets.
	tunnel.GrowReadBuffer(udp, tunnel.DefaultReadBuffer)
	tr := &quic.Transport{Conn: udp}
	b.Cleanup(func() { tr.Close() })
	raddr, err := net.ResolveUDPAddr("udp", c.tunnel)
	if err != nil {
		b.Fatal(err)
	}
	before := processRSS(b, c.cmd.Process.Pid)
	loadBefore := processRSS(b, os.Getpid())
	procs := map[string]int{"controller": c.cmd.Process.Pid, "apiserver": firstChild(b, c.cmd.Process.Pid), "loadgen": os.Getpid()}
	cpuBefore := cpuOf(b, procs)
	_, localPort, _ := net.SplitHostPort(udp.LocalAddr().String())
	_, serverPort, _ := net.SplitHostPort(c.tunnel)
	dropsBefore := udpDrops(b, serverPort, localPort)

	var profiled sync.WaitGroup
	if dir := os.Getenv("OTE_PROFILE_DIR"); dir != "" {
		profiled.Go(func() { saveProfile(b, profiling, "profile?seconds=5", filepath.Join(dir, "connect-cpu.pprof")) })
		f, err := os.Create(filepath.Join(dir, "loadgen-cpu.pprof"))
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			b.Fatal(err)
		}
		defer pprof.StopCPUProfile()
	}
	// Dials go as fast as handshakes complete, a storm; or, with
	// OTE_CPU_CEILING (a busy share of the machine's CPU, e.g. 0.85), only
	// as fast as the machine has CPU to spare.
	ceiling := 1.0
	if v, err := strconv.ParseFloat(os.Getenv("OTE_CPU_CEILING"), 64); err == nil && v > 0 {
		ceiling = v
	}
	var pacer *dialPacer
	pctx, cancelPacing := context.WithCancel(ctx)
	var pacing sync.WaitGroup
	stopPacing := func() { cancelPacing(); pacing.Wait() }
	defer stopPacing()
	if ceiling < 1 {
		pacer = newDialPacer(ceiling, b.Logf)
		pacing.Go(func() {
			if err := pacer.Run(pctx); err != nil {
				b.Errorf("pacing dials: %v", err)
			}
		})
	}
	start := time.Now()
	// A leaf whose handshake fails or is refused tries again after a
	// box's backoff.
	var retries atomic.Int64
	// Every time a leaf lost its tunnel, after start, and why: tells
	// losses in the connect storm from those while settling or holding.
	type loss struct {
		at    time.Duration
		cause string
	}
	var losses []loss
	var lossMu sync.Mutex
	connect := func(i int) (*quic.Conn, error) {
		dctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		conn, err := tr.Dial(dctx, raddr, tunnel.ClientTLS(certs[i], ca.Cert), tunnel.ChildQUICConfig(lostAfter))
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
	// Each leaf's tunnel; a leaf that loses it while the others are still
	// connecting dials again, as a box does, after its backoff's first
	// step, so that the leaves held at the end tell how many the
	// controller carries once the storm is over. Losses after that are
	// final.
	all := make([]*quic.Conn, leaves)
	dialAll := func(pending []int) {
		work := make(chan int)
		for range 32 {
			wg.Go(func() {
				for i := range work {
					var conn *quic.Conn
					var err error
					wait := backoff.Backoff{Min: time.Second, Max: 30 * time.Second, Jitter: 0.2}
					if all[i] != nil {
						wait.Wait(ctx)
					}
					for try := range 20 {
						if try > 0 {
							retries.Add(1)
							wait.Wait(ctx)
						}
						if err = pacer.wait(ctx); err != nil {
							break
						}
						if conn, err = connect(i); err == nil {
							break
						}
					}
					if err != nil {
						mu.Lock()
						firstErr = fmt.Errorf("leaf %d, 20 tries: %w", i, err)
						mu.Unlock()
						continue
					}
					context.AfterFunc(conn.Context(), func() {
						lossMu.Lock()
						losses = append(losses, loss{time.Since(start), fmt.Sprint(context.Cause(conn.Context()))})
						lossMu.Unlock()
					})
					all[i] = conn
				}
			})
		}
		for _, i := range pending {
			work <- i
		}
		close(work)
		wg.Wait()
	}
	pending := make([]int, leaves)
	for i := range pending {
		pending[i] = i
	}
	redials := 0
	for pass := 0; len(pending) > 0 && firstErr == nil; pass++ {
		if pass == 10 {
			b.Fatalf("%d leaves still lose their tunnels after %d rounds of dialing", len(pending), pass)
		}
		if pass > 0 {
			redials += len(pending)
		}
		dialAll(pending)
		pending = pending[:0]
		for i, conn := range all {
			if conn != nil && conn.Context().Err() != nil {
				pending = append(pending, i)
			}
		}
	}
	connected := time.Since(start)
	stopPacing()
	profiled.Wait()
	if firstErr != nil {
		b.Fatal(firstErr)
	}
	// Every leaf that holds its tunnel shows Connected at the API once
	// the status writes of the connect storm have drained. The API server
	// filters on the phase, so only the leaves not yet Connected come back
	// to this process, which holds the leaves' connections too.
	for {
		alive, behind := 0, 0
		for _, conn := range all {
			if conn.Context().Err() == nil {
				alive++
			}
		}
		err := pager.New(func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
			return ecs.List(ctx, opts)
		}).EachListItem(ctx, metav1.ListOptions{FieldSelector: "status.phase!=Connected"}, func(runtime.Object) error {
			behind++
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
		if leaves-behind >= alive {
			break
		}
		// Filtering them all costs the API server: the more, the fewer times.
		time.Sleep(min(max(time.Duration(leaves)*time.Millisecond, time.Second), 15*time.Second))
	}
	settled := time.Since(start)
	report(settled.Seconds(), "s-to-status")
	report(statusWrites(ctx, b, kc)/float64(leaves+redials), "status-writes/dial")
	time.Sleep(5 * time.Second) // let GC settle
	after := processRSS(b, c.cmd.Process.Pid)
	loadAfter := processRSS(b, os.Getpid())
	cpuConnected := cpuOf(b, procs)
	for name := range procs {
		report((cpuConnected[name] - cpuBefore[name]).Seconds(), "cpu-s-connect-"+name)
	}
	if hold, err := time.ParseDuration(os.Getenv("OTE_HOLD")); err == nil && hold > 0 {
		if dir := os.Getenv("OTE_PROFILE_DIR"); dir != "" {
			profiled.Go(func() {
				saveProfile(b, profiling, fmt.Sprintf("profile?seconds=%d", int(hold.Seconds())), filepath.Join(dir, "hold-cpu.pprof"))
			})
		}
		if spec := os.Getenv("OTE_STALL"); spec != "" {
			stall(b, spec, c.cmd.Process.Pid)
		}
		time.Sleep(hold)
		profiled.Wait()
		cpuHeld := cpuOf(b, procs)
		for name := range procs {
			report(float64(cpuHeld[name]-cpuConnected[name])/float64(hold), "cpu-hold-"+name)
		}
	}
	drops := udpDrops(b, serverPort, localPort)
	report(float64(drops[0]-dropsBefore[0]), "udp-drops-controller")
	report(float64(drops[1]-dropsBefore[1]), "udp-drops-loadgen")
	// What the leaves' connections sent and received, handshakes and
	// loss recovery included, tells a quiet hold from a storm of probes.
	var sent, received, lostPackets, sentMost uint64
	var held []*quic.Conn
	for _, conn := range all {
		st := conn.ConnectionStats()
		sent, received, lostPackets = sent+st.PacketsSent, received+st.PacketsReceived, lostPackets+st.PacketsLost
		sentMost = max(sentMost, st.PacketsSent)
		if conn.Context().Err() == nil {
			held = append(held, conn)
		}
	}
	report(float64(sent), "leaf-packets-sent")
	report(float64(received), "leaf-packets-received")
	report(float64(lostPackets), "leaf-packets-lost")
	report(float64(sentMost), "leaf-packets-sent-max")
	lossMu.Lock()
	lost := map[string]int{}
	var lostConnecting, lostSettling, lostHolding int
	perMinute := make([]int, int(time.Since(start)/time.Minute)+1)
	for _, l := range losses {
		lost[l.cause]++
		switch {
		case l.at <= connected:
			lostConnecting++
		case l.at <= settled:
			lostSettling++
		default:
			lostHolding++
		}
		perMinute[min(int(l.at/time.Minute), len(perMinute)-1)]++ // one lost just now
	}
	lossMu.Unlock()
	for cause, n := range lost {
		b.Logf("%d tunnels lost: %s", n, cause)
	}
	report(float64(lostConnecting), "lost-connecting")
	report(float64(lostSettling), "lost-settling")
	report(float64(lostHolding), "lost-holding")
	for m, n := range perMinute {
		if n > 0 {
			b.Logf("minute %d after the first dial: %d tunnels lost", m, n)
		}
	}
	if dir := os.Getenv("OTE_PROFILE_DIR"); dir != "" {
		saveProfile(b, profiling, "heap", filepath.Join(dir, "heap.pprof"))
		saveProfile(b, profiling, "goroutine", filepath.Join(dir, "goroutine.pprof"))
		saveProfile(b, profiling, "heap?debug=1", filepath.Join(dir, "memstats.txt"))
		// Its log, with its GC trace under GODEBUG=gctrace=1, to set
		// beside the loss times.
		if err := os.WriteFile(filepath.Join(dir, "ote-cloud.log"), []byte(c.out.String()), 0o644); err != nil {
			b.Error(err)
		}
		// The load generator's heap: what a collection leaves live.
		debug.FreeOSMemory()
		f, err := os.Create(filepath.Join(dir, "loadgen-heap.pprof"))
		if err == nil {
			err = pprof.WriteHeapProfile(f)
			f.Close()
		}
		if err != nil {
			b.Error(err)
		}
	}
	for _, conn := range held {
		conn.CloseWithError(0, "")
	}
	report(float64(len(held)), "leaves")
	report(float64(after-before)/float64(leaves)/1024, "KiB/leaf")
	report(float64(loadAfter-loadBefore)/float64(leaves)/1024, "loadgen-KiB/leaf")
	report(connected.Seconds(), "s-to-connect")
	report(float64(retries.Load()), "retries")
	report(float64(redials), "redials")
	report(float64(after)/(1<<20), "MiB-rss")
	b.ReportMetric(0, "ns/op")
	if len(held) < leaves { // a failed benchmark prints no metrics
		b.Errorf("%d of %d leaves hold their tunnel after connecting; %s", len(held), leaves, strings.Join(figures, ", "))
	}
}

// stall stops the controller or the load generator for a while (spec
// "controller:10s" or "leaves:6s") with SIGSTOP. The load generator
// stops itself, and a shell started before sends it SIGCONT.
func stall(b *testing.B, spec string, controller int) {
	b.Helper()
	who, dur, _ := strings.Cut(spec, ":")
	d, err := time.ParseDuration(dur)
	if err != nil || d <= 0 || (who != "controller" && who != "leaves") {
		b.Fatalf("OTE_STALL=%q: want controller:DURATION or leaves:DURATION", spec)
	}
	b.Logf("stalling the %s for %v", who, d)
	if who == "controller" {
		syscall.Kill(controller, syscall.SIGSTOP)
		time.Sleep(d)
		syscall.Kill(controller, syscall.SIGCONT)
		return
	}
	cont := exec.Command("sh", "-c", fmt.Sprintf("sleep %.3f; kill -CONT %d", d.Seconds(), os.Getpid()))
	if err := cont.Start(); err != nil {
		b.Fatal(err)
	}
	syscall.Kill(os.Getpid(), syscall.SIGSTOP)
	if err := cont.Wait(); err != nil {
		b.Fatalf("resume the load generator: %v", err)
	}
}

// statusWrites is how many EdgeCluster status writes the API server has
// served, from its request counter.
func statusWrites(ctx context.Context, b *testing.B, kc kubernetes.Interface) float64 {
	b.Helper()
	raw, err := kc.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		b.Fatal(err)
	}
	var n float64
	for line := range strings.Lines(string(raw)) {
		series, value, ok := strings.Cut(strings.TrimSpace(line), " ")
		if !ok || !strings.HasPrefix(series, "apiserver_request_total{") ||
			!strings.Contains(series, `resource="edgeclusters"`) || !strings.Contains(series, `subresource="status"`) ||
			!strings.Contains(series, `verb="PATCH"`) {
			continue
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			b.Fatalf("API server metrics: %q: %v", line, err)
		}
		n += v
	}
	return n
}

// saveProfile fetches one pprof profile from ote-cloud's profiling listener.
func saveProfile(b *testing.B, addr, name, file string) {
	b.Helper()
	resp, err := http.Get("http://" + addr + "/debug/pprof/" + name)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err == nil {
		err = os.WriteFile(file, data, 0o644)
	}
	if err != nil {
		b.Fatal(err)
	}
}

// processRSS is one process's resident set in bytes.
func processRSS(b *testing.B, pid int) int64 {
	b.Helper()
	rss, _ := memOf(pid)
	if rss == 0 {
		b.Fatalf("no Rss for pid %d", pid)
	}
	return rss
}

// cpuOf is the CPU time (user and system) each named process has used.
func cpuOf(b *testing.B, procs map[string]int) map[string]time.Duration {
	b.Helper()
	used := map[string]time.Duration{}
	for name, pid := range procs {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			b.Fatal(err)
		}
		// The fields after the command, which may hold spaces, in
		// parentheses; utime and stime are the 14th and 15th, in ticks.
		_, rest, _ := strings.Cut(string(stat), ") ")
		f := strings.Fields(rest)
		utime, _ := strconv.ParseInt(f[11], 10, 64)
		stime, _ := strconv.ParseInt(f[12], 10, 64)
		used[name] = time.Duration(utime+stime) * time.Second / 100 // USER_HZ
	}
	return used
}

// udpDrops is the datagrams the kernel dropped for the IPv4 UDP sockets
// on each local port, the last column of /proc/net/udp.
func udpDrops(b *testing.B, ports ...string) []int64 {
	b.Helper()
	data, err := os.ReadFile("/proc/net/udp")
	if err != nil {
		b.Fatal(err)
	}
	drops := make([]int64, len(ports))
	for _, line := range strings.Split(string(data), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 13 {
			continue
		}
		_, hexPort, _ := strings.Cut(f[1], ":")
		port, _ := strconv.ParseInt(hexPort, 16, 32)
		n, _ := strconv.ParseInt(f[len(f)-1], 10, 64)
		for i, p := range ports {
			if strconv.FormatInt(port, 10) == p {
				drops[i] += n
			}
		}
	}
	return drops
}
