package board

import (
	"errors"
	"fmt"
	"strings"
)

// QEMUOptions say how to run a virtual board's image.
type QEMUOptions struct {
	Image string // the disk image, used in place
	// Kernel, Initrd and Cmdline boot the kernel directly (files taken
	// from the image's boot partition); without Kernel the board's UEFI
	// firmware boots the image's own bootloader, with its variables in
	// Vars (a writable copy of the firmware's template).
	Kernel, Initrd, Cmdline string
	Vars                    string
	// Forward are user-network port forwards, as QEMU writes them:
	// "tcp:127.0.0.1:8080-:80".
	Forward []string
	// MAC, if set, is the first NIC's address.
	MAC string
	// LAN, if set, adds a second NIC on a multicast socket network
	// ("230.0.0.1:1234") with address LANMAC, shared by every VM given
	// the same LAN.
	LAN, LANMAC string
	// Memory in MiB; default the board's.
	Memory int
}

// VarsTemplate is the firmware's variable store template, for
// QEMUOptions.Vars.
func (q *QEMU) VarsTemplate() string {
	return strings.Replace(q.Firmware, "_CODE", "_VARS", 1)
}

// QEMUArgs is the command line that runs the board under QEMU with TCG,
// the serial console on standard output.
func (b Board) QEMUArgs(o QEMUOptions) ([]string, error) {
	q := b.QEMU
	if q == nil {
		return nil, fmt.Errorf("%s is not a virtual board", b.Name)
	}
	if o.Image == "" {
		return nil, errors.New("qemu: no image")
	}
	mem := q.Memory
	if o.Memory > 0 {
		mem = o.Memory
	}
	args := []string{q.Binary,
		"-machine", q.Machine, "-accel", "tcg", "-cpu", q.CPU, "-m", fmt.Sprint(mem),
		"-display", "none", "-serial", "stdio", "-monitor", "none",
		"-drive", "file=" + o.Image + ",if=virtio,format=raw,cache=unsafe",
	}
	user := "user,id=n0"
	for _, f := range o.Forward {
		user += ",hostfwd=" + f
	}
	nic := "virtio-net-pci,netdev=n0,romfile="
	if o.MAC != "" {
		nic += ",mac=" + o.MAC
	}
	args = append(args, "-netdev", user, "-device", nic)
	if o.LAN != "" {
		lan := "virtio-net-pci,netdev=n1,romfile="
		if o.LANMAC != "" {
			lan += ",mac=" + o.LANMAC
		}
		args = append(args, "-netdev", "socket,id=n1,mcast="+o.LAN+",localaddr=127.0.0.1", "-device", lan)
	}
	if o.Kernel != "" {
		args = append(args, "-kernel", o.Kernel, "-initrd", o.Initrd, "-append", o.Cmdline)
	} else {
		if o.Vars == "" {
			return nil, errors.New("qemu: firmware boot needs a writable copy of the firmware variables")
		}
		args = append(args,
			"-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+q.Firmware,
			"-drive", "if=pflash,format=raw,unit=1,file="+o.Vars)
	}
	return args, nil
}
