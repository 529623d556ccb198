package tests

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/ote-edge/ote/appliance/statuspage"
	"github.com/ote-edge/ote/board"
	"github.com/ote-edge/ote/image"
	"github.com/ote-edge/ote/rootfs"
)

// buildImage runs ote-image build for a board into dir, with config.yaml
// on the boot partition, and returns the image's path.
func buildImage(t testing.TB, boardName, dir, configYAML string) string {
	t.Helper()
	cfg := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfg, []byte(configYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, boardName+".img")
	start := time.Now()
	r := runBinary(t, builtBinary(t, "ote-image"), "build", "--board", boardName, "--out", img, "--config", cfg,
		"--cache", filepath.Join(repoRoot(t), "out", "cache"))
	if r.code != 0 {
		t.Fatalf("ote-image build %s: exit %d\n%s", boardName, r.code, r.stderr)
	}
	t.Logf("built %s in %v", boardName, time.Since(start).Round(100*time.Millisecond))
	return img
}

// startVM boots a virtual board's image under QEMU: directly from the
// kernel and initramfs on the image's boot partition, or through the
// board's UEFI firmware and the image's bootloader. Its status page is
// forwarded to a free port on the host; its console is kept as the
// test's artifact NAME-console.log.
func startVM(t testing.TB, b board.Board, img, name string, firmware bool, tune func(*board.QEMUOptions)) *box {
	t.Helper()
	work := t.TempDir()
	addr := freeAddr(t)
	o := board.QEMUOptions{Image: img, Forward: []string{"tcp:" + addr + "-:80"}}
	if firmware {
		o.Vars = filepath.Join(work, "vars.fd")
		vars, err := os.ReadFile(b.QEMU.VarsTemplate())
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(o.Vars, vars, 0o644)
	} else {
		o.Kernel, o.Initrd, o.Cmdline = filepath.Join(work, "vmlinuz"), filepath.Join(work, "initrd.img"), rootfs.Cmdline(b, "a")
		for _, f := range [][2]string{{"vmlinuz", o.Kernel}, {"initrd.img", o.Initrd}} {
			if err := image.ExtractBootFile(context.Background(), img, f[0], f[1]); err != nil {
				t.Fatal(err)
			}
		}
	}
	if tune != nil {
		tune(&o)
	}
	argv, err := b.QEMUArgs(o)
	if err != nil {
		t.Fatal(err)
	}
	v := &box{t: t, addr: addr, console: &syncBuffer{}, exited: make(chan struct{}), timeout: time.Second}
	v.cmd = exec.Command(argv[0], argv[1:]...)
	v.cmd.Stdout, v.cmd.Stderr = v.console, v.console
	v.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	v.cmd.WaitDelay = 5 * time.Second
	v.started = time.Now()
	if err := v.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { v.cmd.Wait(); close(v.exited) }()
	t.Cleanup(func() {
		v.cmd.Process.Kill()
		<-v.exited
		os.WriteFile(filepath.Join(artifactDir(t), name+"-console.log"), []byte(v.console.String()), 0o644)
	})
	return v
}

// statusUp polls the VM's status page until it answers (QEMU's port
// forward accepts before the guest listens: such a connection fails and
// the next poll makes a new one).
func (b *box) statusUp(within time.Duration) statuspage.Report {
	b.t.Helper()
	return b.waitFor("the status page", within, func(statuspage.Report) bool { return true })
}

// cloudForVMs runs ote-cloud on the host for boxes in QEMU, which reach it
// as 10.0.2.2, and writes an enroll.yaml with a token for it (uses: 0 for
// any number of boxes).
func cloudForVMs(t testing.TB, namePrefix, uses string) (*cloud, string) {
	t.Helper()
	tunnelAddr := freeUDPAddr(t)
	_, port, _ := strings.Cut(tunnelAddr, ":")
	c := startCloud(t, "--data-dir", t.TempDir(), "--api-listen", freeAddr(t), "--listen", tunnelAddr)
	return c, tokenFile(t, c.kubeconfig, "10.0.2.2:"+port, "", "--name-prefix", namePrefix, "--uses", uses)
}

const imagePassword = "image-test-password"

func imageConfig(t *testing.T) string {
	hash, err := bcrypt.GenerateFromPassword([]byte(imagePassword), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return "status:\n  passwordHash: \"" + string(hash) + "\"\n"
}

// Each QEMU board's image, built in the test, boots under TCG, serves its
// status page to the host, enrolls with an ote-cloud on the host (the
// guest reaches it as 10.0.2.2) through an enroll.yaml injected into the
// built image, comes back with the same identity after a reboot from its
// status page, and boots through its UEFI firmware too.
func TestImagesBootAndEnroll(t *testing.T) {
	builtBinary(t, "kube")
	if testing.Short() {
		t.Skip("boots VMs")
	}
	for _, name := range []string{"qemu-amd64", "qemu-arm64"} {
		t.Run(name, func(t *testing.T) { imageBootsAndEnrolls(t, name) })
	}
}

func imageBootsAndEnrolls(t *testing.T, name string) {
	b, err := board.Get(name)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	img := buildImage(t, name, dir, imageConfig(t))
	for _, suffix := range []string{".zst", ".bmap"} {
		if _, err := os.Stat(img + suffix); err != nil {
			t.Errorf("no %s next to the image: %v", suffix, err)
		}
	}

	// ote-cloud on the host; the guest's 10.0.2.2 is the host's loopback.
	c, enrollFile := cloudForVMs(t, strings.TrimPrefix(name, "qemu-"), "1")
	if r := runBinary(t, builtBinary(t, "ote-image"), "enroll", img, enrollFile); r.code != 0 {
		t.Fatalf("ote-image enroll: %s", r.stderr)
	}

	// Flashed onto a bigger disk: the data partition takes the room at
	// the first boot.
	if err := os.Truncate(img, rootfs.MinSize(b)+256<<20); err != nil {
		t.Fatal(err)
	}
	vm := startVM(t, b, img, name, false, nil)
	started := vm.started
	rep := vm.statusUp(90 * time.Second)
	t.Logf("%s: status page %v after QEMU started", name, time.Since(started).Round(10*time.Millisecond))
	if rep.Device.Arch != b.Arch {
		t.Errorf("the guest says arch %q, want %s", rep.Device.Arch, b.Arch)
	}
	if want := int64(b.Partitions.Data) + 200<<20; rep.Device.DataTotal < want {
		t.Errorf("the data filesystem has %d MiB, want over %d: it did not grow to fill the disk", rep.Device.DataTotal>>20, want>>20)
	}
	rep = vm.waitFor("the uplink connected", 120*time.Second, func(r statuspage.Report) bool { return r.Uplink.Phase == "connected" })
	cluster := rep.Uplink.Cluster
	waitPhase(t, c.kubeconfig, cluster, "Connected")
	t.Logf("%s: %s Connected %v after QEMU started", name, cluster, time.Since(started).Round(10*time.Millisecond))

	// Reboot from the status page: the box comes back with its identity,
	// kept on the data partition (its token was single-use).
	req, _ := http.NewRequest(http.MethodPost, "http://"+vm.addr+"/api/v1/reboot", nil)
	req.Header.Set("X-OTE-Password", imagePassword)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("reboot: %s", resp.Status)
	}
	rebooted := time.Now()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if r, err := vm.status(); err != nil || r.Device.UptimeSeconds < time.Since(started).Seconds()/2 {
			break // down, or up again with a fresh uptime
		}
		if time.Now().After(deadline) {
			t.Fatal("the box did not go down after the reboot request")
		}
		time.Sleep(50 * time.Millisecond)
	}
	rep = vm.waitFor("the uplink back after the reboot", 180*time.Second, func(r statuspage.Report) bool {
		return r.Uplink.Phase == "connected" && r.Device.UptimeSeconds < time.Since(rebooted).Seconds()+1
	})
	if rep.Uplink.Cluster != cluster {
		t.Errorf("after the reboot the box is %q, was %q", rep.Uplink.Cluster, cluster)
	}
	waitPhase(t, c.kubeconfig, cluster, "Connected")
	t.Logf("%s: back and Connected %v after the reboot request", name, time.Since(rebooted).Round(10*time.Millisecond))
	vm.cmd.Process.Kill()
	<-vm.exited

	// The same image through the board's UEFI firmware and systemd-boot.
	vm = startVM(t, b, img, name+"-firmware", true, nil)
	started = vm.started
	rep = vm.statusUp(180 * time.Second)
	t.Logf("%s: status page %v after QEMU started, through the firmware", name, time.Since(started).Round(10*time.Millisecond))
	rep = vm.waitFor("the uplink connected after a firmware boot", 120*time.Second, func(r statuspage.Report) bool { return r.Uplink.Phase == "connected" })
	if rep.Uplink.Cluster != cluster {
		t.Errorf("booted through the firmware the box is %q, was %q", rep.Uplink.Cluster, cluster)
	}
}

// Two boxes on one virtual LAN (a QEMU multicast socket network as their
// second NIC) both enroll, each under its own name, with one token.
func TestTwoVMsOnOneLAN(t *testing.T) {
	builtBinary(t, "kube")
	if testing.Short() {
		t.Skip("boots VMs")
	}
	name := "qemu-" + hostArch()
	b, err := board.Get(name)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	img := buildImage(t, name, dir, imageConfig(t))
	c, enrollFile := cloudForVMs(t, "lan", "2")
	lan := fmt.Sprintf("230.0.0.1:%d", 20000+os.Getpid()%20000)
	var vms []*box
	for i := range 2 {
		copyImg := filepath.Join(dir, fmt.Sprintf("box-%d.img", i))
		if out, err := exec.Command("cp", "--sparse=always", img, copyImg).CombinedOutput(); err != nil {
			t.Fatalf("cp: %v %s", err, out)
		}
		if r := runBinary(t, builtBinary(t, "ote-image"), "enroll", copyImg, enrollFile); r.code != 0 {
			t.Fatalf("ote-image enroll: %s", r.stderr)
		}
		vms = append(vms, startVM(t, b, copyImg, fmt.Sprintf("lan-%d", i), false, func(o *board.QEMUOptions) {
			o.MAC = fmt.Sprintf("52:54:00:12:34:%02x", 0x10+i)
			o.LAN, o.LANMAC = lan, fmt.Sprintf("52:54:00:ab:cd:%02x", 0x10+i)
		}))
	}
	names := map[string]bool{}
	for _, vm := range vms {
		rep := vm.waitFor("the uplink connected", 180*time.Second, func(r statuspage.Report) bool { return r.Uplink.Phase == "connected" })
		names[rep.Uplink.Cluster] = true
		waitPhase(t, c.kubeconfig, rep.Uplink.Cluster, "Connected")
	}
	if len(names) != 2 {
		t.Errorf("the two boxes enrolled as %v; want two names", names)
	}
}

// The same inputs give the same image, byte for byte, and the same .zst
// and .bmap.
func TestImageBuildIsReproducible(t *testing.T) {
	if testing.Short() {
		t.Skip("builds images")
	}
	name := "qemu-" + hostArch()
	cfg := imageConfig(t)
	a := buildImage(t, name, t.TempDir(), cfg)
	b := buildImage(t, name, t.TempDir(), cfg)
	for _, suffix := range []string{"", ".zst", ".bmap"} {
		if out, err := exec.Command("cmp", a+suffix, b+suffix).CombinedOutput(); err != nil {
			t.Errorf("two builds differ in %s: %v %s", filepath.Base(a+suffix), err, out)
		}
	}
}

// A Raspberry Pi 4 image's boot partition holds what the Pi's firmware
// needs: its start and fixup files, config.txt for a 64-bit kernel, the
// kernel command line, the kernel, the initramfs and the Pi 4's device
// tree.
func TestRPi4ImageBootPartition(t *testing.T) {
	if testing.Short() {
		t.Skip("builds an image")
	}
	img := buildImage(t, "rpi4", t.TempDir(), imageConfig(t))
	files := map[string]string{}
	for _, f := range []string{"start4.elf", "fixup4.dat", "config.txt", "cmdline.txt", "vmlinuz", "initrd.img", "bcm2711-rpi-4-b.dtb", "ote/config.yaml"} {
		out := filepath.Join(t.TempDir(), filepath.Base(f))
		if err := image.ExtractBootFile(context.Background(), img, f, out); err != nil {
			t.Errorf("boot partition: %s: %v", f, err)
			continue
		}
		data, _ := os.ReadFile(out)
		files[f] = string(data)
	}
	if !strings.Contains(files["config.txt"], "arm_64bit=1") || !strings.Contains(files["config.txt"], "initramfs initrd.img") {
		t.Errorf("config.txt = %q", files["config.txt"])
	}
	if !strings.Contains(files["cmdline.txt"], "ote.slot=a") || !strings.Contains(files["cmdline.txt"], "console=ttyS1,115200") {
		t.Errorf("cmdline.txt = %q", files["cmdline.txt"])
	}
	if len(files["vmlinuz"]) < 1<<20 || len(files["bcm2711-rpi-4-b.dtb"]) < 1<<10 {
		t.Errorf("kernel %d bytes, device tree %d bytes", len(files["vmlinuz"]), len(files["bcm2711-rpi-4-b.dtb"]))
	}
}

// Bad input gets a clear error and leaves no image behind.
func TestImageBadInput(t *testing.T) {
	if testing.Short() {
		t.Skip("builds images")
	}
	dir := t.TempDir()
	bin := builtBinary(t, "ote-image")
	cache := filepath.Join(repoRoot(t), "out", "cache")
	corrupt := filepath.Join(dir, "enroll.yaml")
	os.WriteFile(corrupt, []byte("server: [not, a, host\ntoken: x\n"), 0o600)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown board", []string{"--board", "rpi9"}, `unknown board "rpi9"`},
		{"corrupt enroll.yaml", []string{"--board", "qemu-" + hostArch(), "--enroll", corrupt}, "enroll.yaml"},
		{"too small", []string{"--board", "qemu-" + hostArch(), "--size", "100Mi"}, "too small"},
		{"no overlay", []string{"--board", "qemu-" + hostArch(), "--overlay", filepath.Join(dir, "missing")}, "not a directory"},
	} {
		out := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".img")
		r := runBinary(t, bin, append([]string{"build", "--out", out, "--cache", cache}, tc.args...)...)
		if r.code == 0 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%s: exit %d, %q; want an error saying %q", tc.name, r.code, r.stderr, tc.want)
		}
		if left, _ := filepath.Glob(out + "*"); len(left) > 0 {
			t.Errorf("%s: left %v behind", tc.name, left)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".ote-image-*")); len(left) > 0 {
		t.Errorf("work files left behind: %v", left)
	}
	// An image's enroll file is only replaced with one that parses.
	img := buildImage(t, "qemu-"+hostArch(), dir, imageConfig(t))
	before, _ := os.ReadFile(img)
	if r := runBinary(t, bin, "enroll", img, corrupt); r.code == 0 || !strings.Contains(r.stderr, "enroll.yaml") {
		t.Errorf("enroll with a corrupt file: exit %d, %q", r.code, r.stderr)
	}
	if after, _ := os.ReadFile(img); string(after) != string(before) {
		t.Error("a refused enroll changed the image")
	}
}

func hostArch() string { return runtime.GOARCH }

// BenchmarkImageBoot boots a fresh copy of a QEMU board's image (built
// once, enrolled with a token of the ote-cloud the benchmark runs) for
// each iteration, under TCG, and reports the medians from QEMU's process
// start (the kernel and initramfs already taken out of the image) to
// the status page answering and to the box being connected (first boot:
// enrollment included). OTE_BOARD picks the board (default: the host's
// QEMU board).
//
//	make build kube image && OTE_BOARD=qemu-arm64 OTE_OUT=$PWD/out/amd64 go test ./tests -run '^$' -bench ImageBoot -benchtime 3x
func BenchmarkImageBoot(b *testing.B) {
	name := os.Getenv("OTE_BOARD")
	if name == "" {
		name = "qemu-" + hostArch()
	}
	bd, err := board.Get(name)
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	img := buildImage(b, name, dir, "status:\n  listen: \":80\"\n")
	_, enrollFile := cloudForVMs(b, "bench", "0")
	if r := runBinary(b, builtBinary(b, "ote-image"), "enroll", img, enrollFile); r.code != 0 {
		b.Fatalf("ote-image enroll: %s", r.stderr)
	}
	var toStatus, toConnected []time.Duration
	for i := range b.N {
		boot := filepath.Join(dir, fmt.Sprintf("boot-%d.img", i))
		if out, err := exec.Command("cp", "--sparse=always", img, boot).CombinedOutput(); err != nil {
			b.Fatalf("cp: %v %s", err, out)
		}
		vm := startVM(b, bd, boot, fmt.Sprintf("bench-%s-%d", name, i), false, nil)
		vm.statusUp(120 * time.Second)
		toStatus = append(toStatus, time.Since(vm.started))
		vm.waitFor("connected", 120*time.Second, func(r statuspage.Report) bool { return r.Uplink.Phase == "connected" })
		toConnected = append(toConnected, time.Since(vm.started))
		vm.cmd.Process.Kill()
		<-vm.exited
		os.Remove(boot)
	}
	median := func(d []time.Duration) float64 {
		s := slices.Clone(d)
		slices.Sort(s)
		return s[len(s)/2].Seconds()
	}
	b.ReportMetric(median(toStatus), "s-to-status")
	b.ReportMetric(median(toConnected), "s-to-connected")
	b.ReportMetric(0, "ns/op")
	b.Logf("%s: to status %v, to connected %v", name, toStatus, toConnected)
}
