package rootfs

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/ote-edge/ote/appliance/config"
	"github.com/ote-edge/ote/board"
)

// BootInputs is what the boot partition is made of.
type BootInputs struct {
	Board     board.Board
	Kernel    Kernel
	Initramfs []byte
	// Loader is the unpacked bootloader package (UEFI boards), Firmware
	// the unpacked firmware package (the Raspberry Pi).
	Loader, Firmware string
	// Config and Enroll are ote/config.yaml and ote/enroll.yaml; nil
	// leaves a file out.
	Config, Enroll []byte
}

// Cmdline is the kernel command line for a slot.
func Cmdline(b board.Board, slot string) string {
	var f []string
	for _, c := range b.Console {
		f = append(f, "console="+c)
	}
	return strings.Join(append(f, "ote.slot="+slot, "panic=10"), " ")
}

// efiArch is the UEFI name of an architecture.
func efiArch(arch string) (string, error) {
	switch arch {
	case "amd64":
		return "x64", nil
	case "arm64":
		return "aa64", nil
	}
	return "", fmt.Errorf("rootfs: no UEFI for %s", arch)
}

// BootFiles lays out the FAT boot partition: path in the partition →
// content. UEFI boards get systemd-boot as the removable-media loader with
// one entry per root slot; the Raspberry Pi gets its firmware, config.txt,
// cmdline.txt and device tree. Both get the kernel, the initramfs and the
// ote/ files.
func BootFiles(in BootInputs) (map[string][]byte, error) {
	b := in.Board
	files := map[string][]byte{"initrd.img": in.Initramfs}
	kernel, err := os.ReadFile(in.Kernel.Image)
	if err != nil {
		return nil, err
	}
	files["vmlinuz"] = kernel
	switch b.Boot.Method {
	case board.BootUEFI:
		arch, err := efiArch(b.Arch)
		if err != nil {
			return nil, err
		}
		loader, err := os.ReadFile(filepath.Join(in.Loader, "usr/lib/systemd/boot/efi", "systemd-boot"+arch+".efi"))
		if err != nil {
			return nil, fmt.Errorf("rootfs: systemd-boot from %s: %w", b.Boot.Bootloader, err)
		}
		files["EFI/BOOT/BOOT"+strings.ToUpper(arch)+".EFI"] = loader
		files["loader/loader.conf"] = []byte("default ote-a.conf\ntimeout 0\nconsole-mode keep\n")
		for _, slot := range []string{"a", "b"} {
			files["loader/entries/ote-"+slot+".conf"] = fmt.Appendf(nil, "title OTE (root %s)\nlinux /vmlinuz\ninitrd /initrd.img\noptions %s\n",
				strings.ToUpper(slot), Cmdline(b, slot))
		}
	case board.BootRPi:
		dir := filepath.Join(in.Firmware, "usr/lib/raspi-firmware")
		entries, err := os.ReadDir(dir)
		if err != nil {
			return nil, fmt.Errorf("rootfs: firmware from %s: %w", b.Boot.Firmware, err)
		}
		for _, e := range entries {
			if e.Type().IsRegular() {
				data, err := os.ReadFile(filepath.Join(dir, e.Name()))
				if err != nil {
					return nil, err
				}
				files[e.Name()] = data
			}
		}
		dtb, err := os.ReadFile(filepath.Join(in.Kernel.DTBDir(), b.DeviceTree.File))
		if err != nil {
			return nil, fmt.Errorf("rootfs: device tree: %w", err)
		}
		files[filepath.Base(b.DeviceTree.File)] = dtb
		files["config.txt"] = []byte(b.Boot.ConfigTxt)
		files["cmdline.txt"] = []byte(Cmdline(b, "a") + "\n")
	default:
		return nil, fmt.Errorf("rootfs: boot method %q", b.Boot.Method)
	}
	if in.Config != nil {
		files["ote/config.yaml"] = in.Config
	}
	if in.Enroll != nil {
		files["ote/enroll.yaml"] = in.Enroll
	}
	return files, nil
}

// CheckBootFiles parses config.yaml and enroll.yaml before they go into an
// image, so that a broken file is refused at build time, not on the box.
func CheckBootFiles(configYAML, enrollYAML []byte) error {
	if configYAML != nil {
		if _, err := config.Parse("config.yaml", configYAML); err != nil {
			return err
		}
	}
	if enrollYAML != nil {
		if _, err := config.ParseEnroll("enroll.yaml", enrollYAML); err != nil {
			return err
		}
	}
	return nil
}
