package tests

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/pager"

	"github.com/ote-edge/ote/appliance/backoff"
	"github.com/ote-edge/ote/cloud/crds"
	"github.com/ote-edge/ote/cloud/profiling"
	"github.com/ote-edge/ote/cloud/shard"
	"github.com/ote-edge/ote/cloud/tunnel"
)

// BenchmarkLeavesPerController connects OTE_LEAVES (default 1000)
// simulated leaves to one ote-cloud serve, every one a real QUIC
// connection with its own certificate, each holding its tunnel after
// Hello/Welcome. The load generator is OTE_LOADGEN_PROCS processes of
// this test binary (default one per 50,000 leaves), each with its share
// of the leaves over one UDP socket (quic.Transport); see
// startLeafWorkers for why more than one. It reports the controller's
// resident memory per leaf (ote-cloud and its tunnel shards, if any; the
// API server is a separate process) and the time to connect them all.
// With OTE_PROFILE_DIR set it saves there the controller's heap and
// goroutine profiles at the end (and each tunnel shard's heap), a CPU
// profile of the first five seconds of connecting, the controller's log
// as it goes, and each load generator process's log, CPU profiles of its
// connect and of its hold, and final heap.
// OTE_LOST_AFTER sets the leaves' lostAfter (default 30s, a box's): the
// controller pings each every tunnel.ParentKeepAlive, and a leaf pings
// once half of it has passed in silence; OTE_PING_CHILDREN sets the
// controller's --ping-children, for leaves with a longer lostAfter.
// OTE_CONTROLLER_MEMORY_LIMIT=9Gi runs the controller with that
// --memory-limit. The benchmark reports the controller's collections
// while connecting and holding, and its live heap per leaf after a
// collection of its own at the end (under a bound, its resident set
// grows towards the bound). OTE_APISERVER_MEMORY_LIMIT=3Gi runs the API
// server with that --apiserver-memory-limit.
// OTE_CONTROLLER_SHARDS=3 holds the leaves' tunnels in that many shard
// processes (--tunnel-shards), each bound, with OTE_SHARD_MEMORY_LIMIT,
// by --shard-memory-limit; the controller's figures (collections, live
// heap, profiles) are then its own process's, and the shards' live heap
// per leaf is reported apart. The shards run at a niceness of -5 below
// the controller's (--shard-nice; OTE_SHARD_NICE sets it), and so does
// the load generator. OTE_LOADGEN_GOMAXPROCS sets its processes'
// GOMAXPROCS (default: the runtime's), and OTE_LOADGEN_KIB_PER_LEAF the
// memory bound of each per leaf (default 80; see startLeafWorkers).
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
	profileDir := os.Getenv("OTE_PROFILE_DIR")
	profiles := freeAddr(b)
	args := []string{"--data-dir", b.TempDir(), "--api-listen", freeAddr(b), "--profiling-listen", profiles}
	if v := os.Getenv("OTE_PING_CHILDREN"); v != "" {
		args = append(args, "--ping-children", v)
	}
	if v := os.Getenv("OTE_CONTROLLER_MEMORY_LIMIT"); v != "" {
		args = append(args, "--memory-limit", v)
	}
	if v := os.Getenv("OTE_APISERVER_MEMORY_LIMIT"); v != "" {
		args = append(args, "--apiserver-memory-limit", v)
	}
	shards, _ := strconv.Atoi(os.Getenv("OTE_CONTROLLER_SHARDS"))
	loadgenNice := 0
	if shards > 1 {
		args = append(args, "--tunnel-shards", strconv.Itoa(shards))
		if v := os.Getenv("OTE_SHARD_MEMORY_LIMIT"); v != "" {
			args = append(args, "--shard-memory-limit", v)
		}
		// The leaves, which in the field have CPUs of their own, run
		// ahead of the API server and the controller as the shards do:
		// with only the shards ahead, the load generator's sockets were the
		// ones that overflowed.
		loadgenNice = shard.DefaultNice
		if v, err := strconv.Atoi(os.Getenv("OTE_SHARD_NICE")); err == nil {
			args = append(args, "--shard-nice", strconv.Itoa(v))
			loadgenNice = v
		}
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
	ecs := dynamic.NewForConfigOrDie(rc).Resource(crds.EdgeClusters)
	if profileDir != "" {
		// The controller's log, with its GC trace under
		// GODEBUG=gctrace=1, to set beside the loss times: saved as it
		// goes, so that a run stopped early keeps it too.
		saving, stopSaving := context.WithCancel(ctx)
		var saved sync.WaitGroup
		saveLog := func() {
			if err := os.WriteFile(filepath.Join(profileDir, "ote-cloud.log"), []byte(c.out.String()), 0o644); err != nil {
				b.Error(err)
			}
		}
		saved.Go(func() {
			for backoff.Sleep(saving, 30*time.Second) == nil {
				saveLog()
			}
		})
		defer func() { stopSaving(); saved.Wait(); saveLog() }()
	}

	// Register the leaves, as enrollment would; the load generator's
	// processes issue their identities.
	work := make(chan int)
	var wg sync.WaitGroup
	var firstErr error
	var mu sync.Mutex
	for range 16 {
		wg.Go(func() {
			for i := range work {
				obj := &unstructured.Unstructured{Object: map[string]any{
					"apiVersion": crds.Group + "/" + crds.Version, "kind": "EdgeCluster",
					"metadata": map[string]any{"name": fmt.Sprintf("leaf-%05d", i), "labels": map[string]any{"site": fmt.Sprintf("site-%d", i%100)}},
					"spec":     map[string]any{},
				}}
				if _, err := ecs.Create(ctx, obj, metav1.CreateOptions{}); err != nil {
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

	// Dials go as fast as handshakes complete, a storm; or, with
	// OTE_CPU_CEILING (a busy share of the machine's CPU, e.g. 0.85), only
	// as fast as the machine has CPU to spare.
	ceiling := 1.0
	if v, err := strconv.ParseFloat(os.Getenv("OTE_CPU_CEILING"), 64); err == nil && v > 0 {
		ceiling = v
	}
	// Processes of 50,000 leaves at most: no one heap so large that its
	// collection stalls the machine, and few processes, for each costs
	// CPU of its own. Holding 10k leaves for a minute took 0.19 cores of
	// the load generator in one process, 0.20 in two, and 0.30 in eight.
	procs := (leaves + 49999) / 50000
	if v, err := strconv.Atoi(os.Getenv("OTE_LOADGEN_PROCS")); err == nil && v > 0 {
		procs = min(v, leaves)
	}
	ws := startLeafWorkers(b, leafWorkerConfig{Kubeconfig: c.kubeconfig, Tunnel: c.tunnel, From: 0, To: leaves,
		LostAfter: lostAfter, Ceiling: ceiling, Step: 10, ProfileDir: profileDir}, procs, loadgenNice)
	if shards < 2 {
		shards = 0
	}
	var shardProfiles []string // where each shard serves its profiles
	for i := range shards {
		shardProfiles = append(shardProfiles, profiling.Beside(profiles, i+1))
	}
	apiserver, shardPIDs := childrenOf(b, c.cmd.Process.Pid, shards)
	controllerPIDs := append([]int{c.cmd.Process.Pid}, shardPIDs...)
	before := sumRSS(b, controllerPIDs)
	procsOf := map[string][]int{"controller": {c.cmd.Process.Pid}, "apiserver": {apiserver}, "loadgen": ws.pids()}
	if len(shardPIDs) > 0 {
		procsOf["shards"] = shardPIDs
	}
	cpuBefore := cpuOf(b, procsOf)
	_, serverPort, _ := net.SplitHostPort(c.tunnel)
	ports := append([]string{serverPort}, ws.ports()...)
	dropsBefore := udpDrops(b, ports...)
	gcsBefore := memStat(b, profiles, "NumGC", false)

	var profiled sync.WaitGroup
	if profileDir != "" {
		profiled.Go(func() { saveProfile(b, profiles, "profile?seconds=5", filepath.Join(profileDir, "connect-cpu.pprof")) })
	}
	// A leaf that loses its tunnel while the others are still connecting
	// dials again, as a box does, after its backoff's first step, so that
	// the leaves held at the end tell how many the controller carries
	// once the storm is over. Losses after that are final.
	start := time.Now()
	ws.send(b, "dial")
	lastLog := start
	for {
		total, allHeld := ws.sum(b)
		if allHeld {
			break
		}
		if time.Since(lastLog) >= time.Minute {
			lastLog = time.Now()
			b.Logf("minute %d: %d held, %d dials, %d redials, %d lost", int(time.Since(start)/time.Minute), total.Held, total.Dials, total.Redials, total.Lost)
		}
		time.Sleep(time.Second)
	}
	ws.send(b, "final")
	connected := time.Since(start)
	profiled.Wait()
	// Every leaf that holds its tunnel shows Connected at the API once
	// the status writes of the connect storm have drained. The API server
	// filters on the phase, so only the leaves not yet Connected come back.
	for {
		total, _ := ws.sum(b)
		behind := 0
		err := pager.New(func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
			return ecs.List(ctx, opts)
		}).EachListItem(ctx, metav1.ListOptions{FieldSelector: "status.phase!=Connected"}, func(runtime.Object) error {
			behind++
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
		if leaves-behind >= total.Held {
			break
		}
		// Filtering them all costs the API server: the more, the fewer times.
		time.Sleep(min(max(time.Duration(leaves)*time.Millisecond, time.Second), 15*time.Second))
	}
	settled := time.Since(start)
	total, _ := ws.sum(b)
	report(settled.Seconds(), "s-to-status")
	report(statusWrites(ctx, b, kc)/float64(total.Dials), "status-writes/dial")
	time.Sleep(5 * time.Second) // let GC settle
	after := sumRSS(b, controllerPIDs)
	loadRSS := sumRSS(b, ws.pids())
	cpuConnected := cpuOf(b, procsOf)
	gcsConnected := memStat(b, profiles, "NumGC", false)
	report(float64(gcsConnected-gcsBefore), "gc-connect-controller")
	for name := range procsOf {
		report((cpuConnected[name] - cpuBefore[name]).Seconds(), "cpu-s-connect-"+name)
	}
	if hold, err := time.ParseDuration(os.Getenv("OTE_HOLD")); err == nil && hold > 0 {
		if profileDir != "" {
			profiled.Go(func() {
				saveProfile(b, profiles, fmt.Sprintf("profile?seconds=%d", int(hold.Seconds())), filepath.Join(profileDir, "hold-cpu.pprof"))
			})
		}
		if spec := os.Getenv("OTE_STALL"); spec != "" {
			stall(b, spec, c.cmd.Process.Pid, ws)
		}
		time.Sleep(hold)
		profiled.Wait()
		cpuHeld := cpuOf(b, procsOf)
		for name := range procsOf {
			report(float64(cpuHeld[name]-cpuConnected[name])/float64(hold), "cpu-hold-"+name)
		}
		report(float64(memStat(b, profiles, "NumGC", false)-gcsConnected), "gc-hold-controller")
	}
	drops := udpDrops(b, ports...)
	report(float64(drops[0]-dropsBefore[0]), "udp-drops-controller")
	var loadDrops int64
	for k := 1; k < len(drops); k++ {
		loadDrops += drops[k] - dropsBefore[k]
	}
	report(float64(loadDrops), "udp-drops-loadgen")
	finals := ws.report(b)
	total, _ = ws.sum(b)
	var sent, received, lostPackets, sentMost, heapLive uint64
	lost := map[string]int{}
	var lostConnecting, lostSettling, lostHolding int
	perMinute := make([]int, int(time.Since(start)/time.Minute)+1)
	for _, f := range finals {
		sent, received, lostPackets = sent+f.PacketsSent, received+f.PacketsReceived, lostPackets+f.PacketsLost
		sentMost = max(sentMost, f.PacketsSentMost)
		heapLive += f.HeapLive
		for _, l := range f.Losses {
			at := l.At.Sub(start)
			lost[l.Cause]++
			switch {
			case at <= connected:
				lostConnecting++
			case at <= settled:
				lostSettling++
			default:
				lostHolding++
			}
			perMinute[min(max(int(at/time.Minute), 0), len(perMinute)-1)]++
		}
	}
	// What the leaves' connections sent and received, handshakes and
	// loss recovery included, tells a quiet hold from a storm of probes.
	report(float64(sent), "leaf-packets-sent")
	report(float64(received), "leaf-packets-received")
	report(float64(lostPackets), "leaf-packets-lost")
	report(float64(sentMost), "leaf-packets-sent-max")
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
	if profileDir != "" {
		// Heap profiles after a collection: under GOGC off the last one may
		// be minutes old, and a profile tells the heap as of then.
		saveProfile(b, profiles, "heap?gc=1", filepath.Join(profileDir, "heap.pprof"))
		saveProfile(b, profiles, "goroutine", filepath.Join(profileDir, "goroutine.pprof"))
		saveProfile(b, profiles, "heap?debug=1", filepath.Join(profileDir, "memstats.txt"))
		for i, addr := range shardProfiles {
			saveProfile(b, addr, "heap?gc=1", filepath.Join(profileDir, fmt.Sprintf("shard-%d-heap.pprof", i)))
		}
	}
	report(float64(total.Held), "leaves")
	report(float64(after-before)/float64(leaves)/1024, "KiB/leaf")
	// Under --memory-limit the resident set grows towards the bound; what
	// the leaves keep is the heap left after a collection, forced here,
	// once their count is taken.
	report(float64(memStat(b, profiles, "HeapAlloc", true))/float64(leaves)/1024, "live-KiB/leaf")
	if len(shardProfiles) > 0 {
		var live int64
		for _, addr := range shardProfiles {
			live += memStat(b, addr, "HeapAlloc", true)
		}
		report(float64(live)/float64(leaves)/1024, "shards-live-KiB/leaf")
	}
	report(float64(heapLive)/float64(leaves)/1024, "loadgen-live-KiB/leaf")
	report(connected.Seconds(), "s-to-connect")
	report(float64(total.Retries), "retries")
	report(float64(total.Redials), "redials")
	report(float64(procs), "loadgen-procs")
	report(float64(after)/(1<<20), "MiB-rss")
	report(float64(loadRSS)/(1<<20), "loadgen-MiB-rss")
	b.ReportMetric(0, "ns/op")
	if total.Held < leaves { // a failed benchmark prints no metrics
		b.Errorf("%d of %d leaves hold their tunnel after connecting; %s", total.Held, leaves, strings.Join(figures, ", "))
	}
}

// stall stops the controller or the load generator's processes for a
// while (spec "controller:10s" or "leaves:6s") with SIGSTOP.
func stall(b *testing.B, spec string, controller int, ws *leafWorkers) {
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
	ws.signal(syscall.SIGSTOP)
	time.Sleep(d)
	ws.signal(syscall.SIGCONT)
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
	if err := os.WriteFile(file, getProfile(b, addr, name), 0o644); err != nil {
		b.Fatal(err)
	}
}

// getProfile is the body of /debug/pprof/name on the profiling address.
func getProfile(b *testing.B, addr, name string) []byte {
	b.Helper()
	resp, err := http.Get("http://" + addr + "/debug/pprof/" + name)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		b.Fatal(err)
	}
	return data
}

// memStat is one of the runtime.MemStats fields that the heap profile
// in text form lists at its end ("# NumGC = 12"). With gc, the process
// collects its garbage first, as net/http/pprof's ?gc=1 does.
func memStat(b *testing.B, addr, field string, gc bool) int64 {
	b.Helper()
	name := "heap?debug=1"
	if gc {
		name += "&gc=1"
	}
	prefix := "# " + field + " = "
	for line := range strings.Lines(string(getProfile(b, addr, name))) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), prefix); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				b.Fatalf("%s%s: %v", prefix, v, err)
			}
			return n
		}
	}
	b.Fatalf("no %s in the controller's heap profile", field)
	return 0
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

// sumRSS is the resident sets of processes together, in bytes.
func sumRSS(b *testing.B, pids []int) int64 {
	b.Helper()
	var sum int64
	for _, pid := range pids {
		sum += processRSS(b, pid)
	}
	return sum
}

// childrenOf finds the controller's API server and its shards'
// processes, as many as it starts.
func childrenOf(b testing.TB, pid, shards int) (apiserver int, shardPIDs []int) {
	b.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		apiserver, shardPIDs = 0, nil
		for _, child := range childPIDs(pid) {
			cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", child))
			switch {
			case strings.Contains(string(cmdline), "tunnel-shard"):
				shardPIDs = append(shardPIDs, child)
			case strings.Contains(string(cmdline), "apiserver"):
				apiserver = child
			}
		}
		if apiserver != 0 && len(shardPIDs) == shards {
			return apiserver, shardPIDs
		}
		time.Sleep(50 * time.Millisecond)
	}
	b.Fatalf("pid %d: API server %d and %d shards, want %d", pid, apiserver, len(shardPIDs), shards)
	return 0, nil
}

// cpuOf is the CPU time (user and system) each named group of processes
// has used.
func cpuOf(b *testing.B, procs map[string][]int) map[string]time.Duration {
	b.Helper()
	used := map[string]time.Duration{}
	for name, pids := range procs {
		for _, pid := range pids {
			used[name] += cpuOfPID(b, pid)
		}
	}
	return used
}

// cpuOfPID is the CPU time (user and system) one process has used.
func cpuOfPID(b *testing.B, pid int) time.Duration {
	b.Helper()
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
	return time.Duration(utime+stime) * time.Second / 100 // USER_HZ
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
