package board

import (
	"errors"
	"strings"
	"testing"
)

func TestAllBoardsParse(t *testing.T) {
	all, err := All()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"generic-amd64", "qemu-amd64", "qemu-arm64", "rpi4"}
	if got := Names(); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("boards = %v, want %v", got, want)
	}
	for _, b := range all {
		if b.Name == "qemu-amd64" || b.Name == "qemu-arm64" {
			if b.QEMU == nil || !strings.HasPrefix(b.Kernel.Package, "linux-image-cloud-") {
				t.Errorf("%s: a QEMU board runs a cloud kernel and says how QEMU runs it: %+v", b.Name, b)
			}
		}
	}
	pi, err := Get("rpi4")
	if err != nil {
		t.Fatal(err)
	}
	if pi.Arch != "arm64" || pi.Boot.Method != BootRPi || pi.DeviceTree == nil || !strings.Contains(pi.Boot.ConfigTxt, "arm_64bit=1") {
		t.Errorf("rpi4 = %+v", pi)
	}
	if pi.Partitions.Boot.String() != "256Mi" || pi.Partitions.Root.String() != "1Gi" {
		t.Errorf("rpi4 partitions = %v %v", pi.Partitions.Boot, pi.Partitions.Root)
	}
}

func TestUnknownBoardNamesTheKnownOnes(t *testing.T) {
	_, err := Get("rpi9")
	if !errors.Is(err, ErrUnknown) || !strings.Contains(err.Error(), "qemu-arm64") {
		t.Errorf("Get(rpi9) = %v; want ErrUnknown listing the boards", err)
	}
}

func TestParseRejectsBadBoards(t *testing.T) {
	good, err := files.ReadFile("qemu-amd64.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, from, to, want string }{
		{"no source", "  source: https://packages.debian.org/bookworm/linux-image-cloud-amd64\n", "", "kernel needs a source"},
		{"arch", "arch: amd64", "arch: mips", `arch "mips"`},
		{"size", "boot: 64Mi", "boot: 64MB", "want a size such as 64Mi"},
		{"small boot", "boot: 64Mi", "boot: 16Mi", "at least 33Mi"},
		{"unknown key", "arch: amd64", "arch: amd64\nflavour: x", "field flavour not found"},
		{"method", "method: uefi", "method: bios", `boot.method "bios"`},
	} {
		data := strings.Replace(string(good), tc.from, tc.to, 1)
		if data == string(good) {
			t.Fatalf("%s: %q not in the file", tc.name, tc.from)
		}
		if _, err := Parse("qemu-amd64.yaml", []byte(data)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.want)
		}
	}
	if _, err := Parse("other.yaml", good); err == nil || !strings.Contains(err.Error(), "file's name") {
		t.Errorf("a board in a file of another name: %v", err)
	}
}

func TestQEMUArgs(t *testing.T) {
	b, _ := Get("qemu-arm64")
	args, err := b.QEMUArgs(QEMUOptions{Image: "box.img", Kernel: "k", Initrd: "i", Cmdline: "c", Forward: []string{"tcp:127.0.0.1:8080-:80"}, LAN: "230.0.0.1:1234", LANMAC: "52:54:00:00:00:01"})
	if err != nil {
		t.Fatal(err)
	}
	line := strings.Join(args, " ")
	for _, want := range []string{"qemu-system-aarch64 ", "-machine virt", "-accel tcg", "-cpu cortex-a57", "hostfwd=tcp:127.0.0.1:8080-:80", "mcast=230.0.0.1:1234", "-kernel k -initrd i -append c", "file=box.img,if=virtio"} {
		if !strings.Contains(line, want) {
			t.Errorf("%q lacks %q", line, want)
		}
	}
	if _, err := b.QEMUArgs(QEMUOptions{Image: "box.img"}); err == nil {
		t.Error("a firmware boot without a variables file was accepted")
	}
	args, _ = b.QEMUArgs(QEMUOptions{Image: "box.img", Vars: "vars.fd"})
	if line := strings.Join(args, " "); !strings.Contains(line, "/usr/share/AAVMF/AAVMF_CODE.fd") || !strings.Contains(line, "file=vars.fd") {
		t.Errorf("firmware boot: %q", line)
	}
	pi, _ := Get("rpi4")
	if _, err := pi.QEMUArgs(QEMUOptions{Image: "x"}); err == nil {
		t.Error("rpi4 has no QEMU command line")
	}
}
