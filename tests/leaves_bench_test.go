package tests

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

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
// profiles there once all are connected, and a CPU profile of the first
// five seconds of connecting. OTE_LOST_AFTER sets the leaves' lostAfter
// (default 30s, a box's): their keepalives go three times in it.
//
//	make build kube && OTE_LEAVES=1000 OTE_OUT=$PWD/out/amd64 go test ./tests -run '^$' -bench LeavesPerController -benchtime 1x
func BenchmarkLeavesPerController(b *testing.B) {
	leaves := 1000
	if v, err := strconv.Atoi(os.Getenv("OTE_LEAVES")); err == nil && v > 0 {
		leaves = v
	}
	lostAfter := 30 * time.Second // a box's default
	if v, err := time.ParseDuration(os.Getenv("OTE_LOST_AFTER")); err == nil && v >= time.Second {
		lostAfter = v
	}
	// The load generator holds as many connections as the controller:
	// it keeps its own heap tight to leave the machine to the controller.
	defer debug.SetGCPercent(debug.SetGCPercent(50))
	profiling := freeAddr(b)
	c := startCloud(b, "--data-dir", b.TempDir(), "--api-listen", freeAddr(b), "--profiling-listen", profiling)
	rc, _ := clientcmd.BuildConfigFromFlags("", c.kubeconfig)
	rc.QPS, rc.Burst = 1000, 1000
	ctx := context.Background()
	ca, err := (enrollment.Store{Client: kubernetes.NewForConfigOrDie(rc)}).TreeCA(ctx, false)
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
					if certPEM, keyPEM, err = ca.Issue(pki.Request{CommonName: name, Client: true, Validity: time.Hour}); err == nil {
						certs[i], err = tls.X509KeyPair(certPEM, keyPEM)
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
	tr := &quic.Transport{Conn: udp}
	b.Cleanup(func() { tr.Close() })
	raddr, err := net.ResolveUDPAddr("udp", c.tunnel)
	if err != nil {
		b.Fatal(err)
	}
	before := processRSS(b, c.cmd.Process.Pid)
	loadBefore := processRSS(b, os.Getpid())

	var profiled sync.WaitGroup
	if dir := os.Getenv("OTE_PROFILE_DIR"); dir != "" {
		profiled.Go(func() { saveProfile(b, profiling, "profile?seconds=5", filepath.Join(dir, "connect-cpu.pprof")) })
	}
	start := time.Now()
	conns := make(chan *quic.Conn, leaves)
	work = make(chan int)
	// A leaf whose handshake fails tries again, as a box's uplink does
	// (after a second, not its backoff's full range).
	var retries atomic.Int64
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
	for range 32 {
		wg.Go(func() {
			for i := range work {
				var conn *quic.Conn
				var err error
				for try := range 5 {
					if try > 0 {
						retries.Add(1)
						time.Sleep(time.Second)
					}
					if conn, err = connect(i); err == nil {
						break
					}
				}
				if err != nil {
					mu.Lock()
					firstErr = fmt.Errorf("leaf %d, five tries: %w", i, err)
					mu.Unlock()
					continue
				}
				conns <- conn
			}
		})
	}
	for i := range leaves {
		work <- i
	}
	close(work)
	wg.Wait()
	connected := time.Since(start)
	profiled.Wait()
	close(conns)
	if firstErr != nil {
		b.Fatal(firstErr)
	}
	time.Sleep(5 * time.Second) // let status writes and GC settle
	after := processRSS(b, c.cmd.Process.Pid)
	loadAfter := processRSS(b, os.Getpid())
	var held []*quic.Conn
	lost := map[string]int{}
	for conn := range conns {
		if conn.Context().Err() == nil {
			held = append(held, conn)
		} else {
			lost[fmt.Sprint(context.Cause(conn.Context()))]++
		}
	}
	for cause, n := range lost {
		b.Logf("%d leaves lost their tunnel: %s", n, cause)
	}
	if dir := os.Getenv("OTE_PROFILE_DIR"); dir != "" {
		saveProfile(b, profiling, "heap", filepath.Join(dir, "heap.pprof"))
		saveProfile(b, profiling, "goroutine", filepath.Join(dir, "goroutine.pprof"))
		saveProfile(b, profiling, "heap?debug=1", filepath.Join(dir, "memstats.txt"))
	}
	for _, conn := range held {
		conn.CloseWithError(0, "")
	}
	if len(held) < leaves {
		b.Errorf("%d of %d leaves hold their tunnel after connecting", len(held), leaves)
	}
	b.ReportMetric(float64(len(held)), "leaves")
	b.ReportMetric(float64(after-before)/float64(leaves)/1024, "KiB/leaf")
	b.ReportMetric(float64(loadAfter-loadBefore)/float64(leaves)/1024, "loadgen-KiB/leaf")
	b.ReportMetric(connected.Seconds(), "s-to-connect")
	b.ReportMetric(float64(retries.Load()), "retries")
	b.ReportMetric(float64(after)/(1<<20), "MiB-rss")
	b.ReportMetric(0, "ns/op")
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
	rollup, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		b.Fatal(err)
	}
	var kb int64
	for _, line := range strings.Split(string(rollup), "\n") {
		if _, err := fmt.Sscanf(line, "Rss: %d kB", &kb); err == nil {
			return kb << 10
		}
	}
	b.Fatalf("no Rss for pid %d", pid)
	return 0
}
