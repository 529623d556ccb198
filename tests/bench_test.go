package tests

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/ote-edge/ote/appliance/statuspage"
	"github.com/ote-edge/ote/cloud/crds"
	"github.com/ote-edge/ote/cloud/enrollment"
	"github.com/ote-edge/ote/cloud/tunnel"
)

// BenchmarkIdleTree starts `ote init --root` and reports the time from
// start until the state service is ready and the page answers, and the
// resident memory of the whole idle tree a few seconds later: "base" is
// ote init, the state service and the status page; "full" adds the
// cluster controller (not enrolled, so idle).
//
//	make build && OTE_OUT=$PWD/out/amd64 go test ./tests -run '^$' -bench IdleTree -benchtime 5x
func BenchmarkIdleTree(b *testing.B) {
	b.Run("base", func(b *testing.B) { benchIdleTree(b, "services:\n  controller:\n    disabled: true\n") })
	b.Run("full", func(b *testing.B) { benchIdleTree(b, "") })
}

func benchIdleTree(b *testing.B, configYAML string) {
	var readySum time.Duration
	var rssSum, pssSum int64
	for b.Loop() {
		root := b.TempDir()
		writeBootFile(b, root, "config.yaml", configYAML)
		start := time.Now()
		box := startBox(b, root)
		box.waitFor("the state service", 30*time.Second, func(r statuspage.Report) bool { return service(r, "state").State == "running" })
		readySum += time.Since(start)
		time.Sleep(3 * time.Second) // idle
		rss, pss := treeMemory(b, box.cmd.Process.Pid)
		rssSum += rss
		pssSum += pss
		box.stop(15 * time.Second)
	}
	b.ReportMetric(float64(readySum.Milliseconds())/float64(b.N), "ms-to-ready")
	b.ReportMetric(float64(rssSum)/float64(b.N)/(1<<20), "MiB-rss")
	// The services are the same binary: PSS shares its pages fairly.
	b.ReportMetric(float64(pssSum)/float64(b.N)/(1<<20), "MiB-pss")
	b.ReportMetric(0, "ns/op")
}

// treeMemory sums the resident (Rss) and proportional (Pss) set sizes
// over pid and all its descendants.
func treeMemory(b *testing.B, pid int) (rssTotal, pssTotal int64) {
	children := map[int][]int{}
	rss, pss := map[int]int64{}, map[int]int64{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		i := bytes.LastIndexByte(stat, ')')
		f := strings.Fields(string(stat[i+2:]))
		ppid, _ := strconv.Atoi(f[1])
		children[ppid] = append(children[ppid], p)
		rss[p], pss[p] = memOf(p)
	}
	var walk func(int)
	walk = func(p int) {
		rssTotal += rss[p]
		pssTotal += pss[p]
		for _, c := range children[p] {
			walk(c)
		}
	}
	walk(pid)
	if rssTotal == 0 || len(children[pid]) == 0 {
		b.Fatalf("pid %d: no memory read, or no services running under it", pid)
	}
	return rssTotal, pssTotal
}

// memOf is a process's resident and proportional set sizes in bytes,
// zero when they cannot be read.
func memOf(pid int) (rss, pss int64) {
	rollup, _ := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	for _, line := range strings.Split(string(rollup), "\n") {
		k, v, _ := strings.Cut(line, ":")
		kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
		switch k {
		case "Rss":
			rss = kb << 10
		case "Pss":
			pss = kb << 10
		}
	}
	return rss, pss
}

// BenchmarkDeliveryLatency: from a ClusterDeployment update at the API
// server to its Desired frame at a connected child, one hop, over real
// QUIC on loopback. Reports p50 and p99.
//
//	make build kube && OTE_OUT=$PWD/out/amd64 go test ./tests -run '^$' -bench DeliveryLatency -benchtime 200x
func BenchmarkDeliveryLatency(b *testing.B) {
	c := startCloud(b, "--data-dir", b.TempDir(), "--api-listen", freeAddr(b))
	deliveryLatency(b, c.kubeconfig, c)
}

// BenchmarkDeliveryLatencyTwoHops is BenchmarkDeliveryLatency through a
// level: the ClusterDeployment is updated at the root, and the child is
// enrolled at a region below it, which keeps the deployment in its own
// API server and routes it on.
func BenchmarkDeliveryLatencyTwoHops(b *testing.B) {
	root := startCloud(b, "--data-dir", b.TempDir(), "--api-listen", freeAddr(b), "--name", "root")
	enrollFile := tokenFile(b, root.kubeconfig, root.tunnel, "region-a", "--level")
	region := startCloud(b, "--data-dir", b.TempDir(), "--api-listen", freeAddr(b), "--enroll-file", enrollFile)
	deliveryLatency(b, root.kubeconfig, region)
}

// deliveryLatency measures updates of a ClusterDeployment made through
// kubeconfig until they reach a child enrolled at level c.
func deliveryLatency(b *testing.B, kubeconfig string, c *cloud) {
	rc, _ := clientcmd.BuildConfigFromFlags("", c.kubeconfig)
	store := enrollment.Store{Client: kubernetes.NewForConfigOrDie(rc)}
	tok, err := store.Create(context.Background(), enrollment.Options{Uses: 1, TTL: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	ch, err := enroll(b, c.tunnel, tok, "bench-1", nil)
	if err != nil {
		b.Fatal(err)
	}
	mustKubectl(b, kubeconfig, `
apiVersion: ote.dev/v1alpha1
kind: ClusterDeployment
metadata: {name: bench, namespace: default}
spec:
  clusterSelector: {names: [bench-1]}
  manifests: [{apiVersion: v1, kind: ConfigMap, metadata: {name: bench}, data: {n: "0"}}]
`, "apply", "-f", "-")
	e, err := ch.connect(b, c.tunnel)
	if err != nil {
		b.Fatal(err)
	}
	str, r := e.str, e.r
	str.SetReadDeadline(time.Time{}) // connect set one for the Welcome
	arrivals := make(chan int64, 16)
	go func() {
		for {
			m, err := r.Read()
			if err != nil {
				close(arrivals)
				return
			}
			if d, ok := m.(*tunnel.Desired); ok {
				tunnel.WriteFrame(str, &tunnel.Ack{Revision: d.Revision})
				arrivals <- d.Revision
			}
		}
	}()
	select { // the initial set
	case <-arrivals:
	case <-time.After(60 * time.Second):
		b.Fatal("no desired set within 60s")
	}
	rc, _ = clientcmd.BuildConfigFromFlags("", kubeconfig)
	rc.QPS, rc.Burst = 1000, 1000 // the operator's side must not be what is measured
	cds := dynamic.NewForConfigOrDie(rc).Resource(crds.ClusterDeployments).Namespace("default")
	ctx := context.Background()
	var lat []time.Duration
	b.ResetTimer()
	for i := range b.N {
		patch := fmt.Appendf(nil, `{"spec":{"manifests":[{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"bench"},"data":{"n":"%d"}}]}}`, i+1)
		start := time.Now()
		if _, err := cds.Patch(ctx, "bench", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			b.Fatal(err)
		}

		select {
		case _, ok := <-arrivals:
			if !ok {
				b.Fatal("tunnel closed")
			}

		case <-time.After(30 * time.Second):
			b.Fatal("no Desired frame within 30s")
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "ms-p50")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "ms-p99")
}
