// Package pid1 does what the box's init must do before and after the
// supervised tree runs: mount the kernel filesystems, set the hostname,
// load the board's kernel modules, bring up loopback, and finally sync
// and reboot or power off. Only `ote init` running as PID 1 calls it.
package pid1

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// IsPID1 reports whether this process is the system's init.
func IsPID1() bool { return os.Getpid() == 1 }

type mount struct {
	source, target, fstype string
	flags                  uintptr
	data                   string
}

// The Debian kernels do not mount devtmpfs by themselves.
var earlyMounts = []mount{
	{"proc", "/proc", "proc", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
	{"sysfs", "/sys", "sysfs", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
	{"devtmpfs", "/dev", "devtmpfs", unix.MS_NOSUID, "mode=0755"},
	{"devpts", "/dev/pts", "devpts", unix.MS_NOSUID | unix.MS_NOEXEC, "gid=5,mode=0620,ptmxmode=0666"},
	{"tmpfs", "/dev/shm", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777"},
	{"tmpfs", "/run", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=0755"},
	{"cgroup2", "/sys/fs/cgroup", "cgroup2", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, "nsdelegate"},
}

// MountEarly mounts /proc, /sys, /dev, /run and the cgroup2 hierarchy.
// A filesystem already mounted there (by an initramfs that moved it) is
// left as it is.
func MountEarly() error {
	var errs []error
	for _, m := range earlyMounts {
		if err := os.MkdirAll(m.target, 0o755); err != nil {
			errs = append(errs, err)
			continue
		}
		err := unix.Mount(m.source, m.target, m.fstype, m.flags, m.data)
		if err != nil && !errors.Is(err, unix.EBUSY) {
			errs = append(errs, fmt.Errorf("mount %s on %s: %w", m.fstype, m.target, err))
		}
	}
	return errors.Join(errs...)
}

// SetHostname sets the kernel's hostname.
func SetHostname(name string) error {
	if err := unix.Sethostname([]byte(name)); err != nil {
		return fmt.Errorf("set hostname %q: %w", name, err)
	}
	return nil
}

// ModuleList is where the image lists the kernel modules ote init loads
// at boot: one .ko path per line, dependencies first; '#' starts a comment.
const ModuleList = "/etc/ote/modules"

// ReadModuleList reads a module list; a missing file is an empty list.
func ReadModuleList(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var mods []string
	for _, line := range strings.Split(string(b), "\n") {
		line, _, _ = strings.Cut(line, "#")
		if line = strings.TrimSpace(line); line != "" {
			mods = append(mods, line)
		}
	}
	return mods, nil
}

// LoadModules loads kernel module files in the order given (dependencies
// first, as the image lists them). A module already loaded is fine.
func LoadModules(paths []string) error {
	var errs []error
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		err = unix.FinitModule(int(f.Fd()), "", 0)
		f.Close()
		if err != nil && !errors.Is(err, unix.EEXIST) {
			errs = append(errs, fmt.Errorf("load module %s: %w", p, err))
		}
	}
	return errors.Join(errs...)
}

// LoopbackUp brings up the lo interface.
func LoopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("lo flags: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("lo up: %w", err)
	}
	return nil
}

// Action is what the box does once its tree has stopped.
type Action int

// Actions.
const (
	Exit     Action = iota // return from ote init (not PID 1)
	Reboot                 // reboot(2) RESTART
	PowerOff               // reboot(2) POWER_OFF
	Halt                   // reboot(2) HALT
)

func (a Action) String() string {
	return [...]string{"exit", "reboot", "poweroff", "halt"}[a]
}

// Finish syncs the filesystems and carries out a as PID 1. It returns
// only on failure.
func Finish(a Action) error {
	unix.Sync()
	cmd := map[Action]int{
		Reboot:   unix.LINUX_REBOOT_CMD_RESTART,
		PowerOff: unix.LINUX_REBOOT_CMD_POWER_OFF,
		Halt:     unix.LINUX_REBOOT_CMD_HALT,
	}[a]
	if cmd == 0 {
		return fmt.Errorf("no reboot(2) command for %s", a)
	}
	return unix.Reboot(cmd)
}
