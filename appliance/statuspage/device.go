package statuspage

import (
	"bufio"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Device is the box's hardware and operating system health.
type Device struct {
	Hostname      string     `json:"hostname"`
	Board         string     `json:"board"`
	Arch          string     `json:"arch"`
	Kernel        string     `json:"kernel"`
	UptimeSeconds float64    `json:"uptimeSeconds"`
	Load          [3]float64 `json:"load"`
	MemTotal      int64      `json:"memTotalBytes"`
	MemAvailable  int64      `json:"memAvailableBytes"`
	RootUsed      int64      `json:"rootUsedBytes"`
	RootTotal     int64      `json:"rootTotalBytes"`
	DataUsed      int64      `json:"dataUsedBytes"`
	DataTotal     int64      `json:"dataTotalBytes"`
}

// Uptime formats the uptime for people.
func (d Device) Uptime() string {
	return (time.Duration(d.UptimeSeconds) * time.Second).String()
}

func readDevice(hostname, dataDir string) Device {
	d := Device{Hostname: hostname, Arch: runtime.GOARCH, Board: board()}
	if d.Hostname == "" {
		d.Hostname, _ = os.Hostname()
	}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		d.Kernel = unix.ByteSliceToString(u.Release[:])
	}
	if b, err := os.ReadFile("/proc/uptime"); err == nil {
		if f := strings.Fields(string(b)); len(f) > 0 {
			d.UptimeSeconds, _ = strconv.ParseFloat(f[0], 64)
		}
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		f := strings.Fields(string(b))
		for i := 0; i < 3 && i < len(f); i++ {
			d.Load[i], _ = strconv.ParseFloat(f[i], 64)
		}
	}
	d.MemTotal, d.MemAvailable = meminfo()
	d.RootUsed, d.RootTotal = diskUsage("/")
	d.DataUsed, d.DataTotal = diskUsage(dataDir)
	return d
}

// board names the hardware from the device tree (ARM boards) or DMI (PCs).
func board() string {
	for _, f := range []string{"/proc/device-tree/model", "/sys/class/dmi/id/product_name"} {
		if b, err := os.ReadFile(f); err == nil {
			if s := strings.Trim(string(b), "\x00 \n"); s != "" {
				return s
			}
		}
	}
	return "unknown"
}

func meminfo() (total, available int64) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), ":")
		kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch k {
		case "MemTotal":
			total = kb << 10
		case "MemAvailable":
			available = kb << 10
		}
	}
	return total, available
}

func diskUsage(path string) (used, total int64) {
	var st unix.Statfs_t
	if path == "" || unix.Statfs(path, &st) != nil {
		return 0, 0
	}
	total = int64(st.Blocks) * st.Bsize
	return total - int64(st.Bfree)*st.Bsize, total
}
