package tests

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ote-edge/ote/appliance/statuspage"
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
		rollup, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "smaps_rollup"))
		for _, line := range strings.Split(string(rollup), "\n") {
			k, v, _ := strings.Cut(line, ":")
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			switch k {
			case "Rss":
				rss[p] = kb << 10
			case "Pss":
				pss[p] = kb << 10
			}
		}
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
