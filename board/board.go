// Package board describes the boards OTE builds images for, as data: one
// YAML file per board in this folder, embedded in the binaries. A board
// gives its architecture, Debian kernel package, how it boots (UEFI with
// systemd-boot, or the Raspberry Pi firmware), device tree, console, the
// kernel modules the initramfs loads, partition sizes and, for virtual
// boards, how QEMU runs it. Every fact names its source.
package board

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

//go:embed *.yaml
var files embed.FS

// Board is one board.
type Board struct {
	Name        string `yaml:"name"`
	Description string `yaml:"description"`
	// Arch is the Debian (and Go) architecture: amd64 or arm64.
	Arch          string      `yaml:"arch"`
	Kernel        Kernel      `yaml:"kernel"`
	Boot          Boot        `yaml:"boot"`
	DeviceTree    *DeviceTree `yaml:"deviceTree"`
	Console       []string    `yaml:"console"` // kernel console= values, the last the main one
	ConsoleSource string      `yaml:"consoleSource"`
	Modules       Modules     `yaml:"modules"`
	Partitions    Partitions  `yaml:"partitions"`
	QEMU          *QEMU       `yaml:"qemu"` // virtual boards only
}

// Kernel is the Debian package the kernel, its modules and device trees
// come from.
type Kernel struct {
	Package string `yaml:"package"`
	Source  string `yaml:"source"`
}

// Boot methods.
const (
	BootUEFI = "uefi" // UEFI firmware loads systemd-boot from the FAT partition
	BootRPi  = "rpi"  // the Raspberry Pi GPU firmware reads config.txt
)

// Boot is how the board starts the kernel.
type Boot struct {
	Method string `yaml:"method"`
	// Bootloader is the Debian package with the UEFI bootloader.
	Bootloader string `yaml:"bootloader"`
	// Firmware is the Debian package with the board's boot firmware.
	Firmware string `yaml:"firmware"`
	Source   string `yaml:"source"`
	// ConfigTxt is the Raspberry Pi firmware's config.txt.
	ConfigTxt       string `yaml:"configTxt"`
	ConfigTxtSource string `yaml:"configTxtSource"`
}

// DeviceTree is the board's device tree blob, a path under the kernel
// package's dtb directory.
type DeviceTree struct {
	File   string `yaml:"file"`
	Source string `yaml:"source"`
}

// Modules are the kernel modules the initramfs loads (with what they
// depend on) to reach the root and data partitions and the network.
// Modules built into the kernel are skipped.
type Modules struct {
	List   []string `yaml:"list"`
	Source string   `yaml:"source"`
}

// Partitions are the sizes of the boot partition, of each root slot, and
// of the data partition as written (it grows to fill the disk on first
// boot).
type Partitions struct {
	Boot Size `yaml:"boot"`
	Root Size `yaml:"root"`
	Data Size `yaml:"data"`
}

// QEMU says how to run a virtual board.
type QEMU struct {
	Binary  string `yaml:"binary"`
	Machine string `yaml:"machine"`
	CPU     string `yaml:"cpu"`
	Memory  int    `yaml:"memory"` // MiB
	// Firmware is the UEFI code image, from FirmwarePackage.
	Firmware        string `yaml:"firmware"`
	FirmwarePackage string `yaml:"firmwarePackage"`
	Source          string `yaml:"source"`
}

// Size is a byte count, written with a binary suffix: 64Mi, 1Gi.
type Size int64

var sizeRe = regexp.MustCompile(`^([1-9][0-9]*)(Mi|Gi)$`)

// UnmarshalYAML implements yaml.Unmarshaler.
func (s *Size) UnmarshalYAML(n *yaml.Node) error {
	m := sizeRe.FindStringSubmatch(n.Value)
	if n.Kind != yaml.ScalarNode || m == nil {
		return fmt.Errorf("line %d: want a size such as 64Mi or 1Gi, got %q", n.Line, n.Value)
	}
	v, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	shift := 20
	if m[2] == "Gi" {
		shift = 30
	}
	*s = Size(v << shift)
	return nil
}

// Set parses a size given as a flag.
func (s *Size) Set(v string) error {
	if err := s.UnmarshalYAML(&yaml.Node{Kind: yaml.ScalarNode, Value: v}); err != nil {
		return fmt.Errorf("want a size such as 512Mi or 4Gi, got %q", v)
	}
	return nil
}

func (s Size) String() string {
	if s%(1<<30) == 0 {
		return fmt.Sprintf("%dGi", s>>30)
	}
	return fmt.Sprintf("%dMi", s>>20)
}

// ErrUnknown is returned for a board name that is not in the list.
var ErrUnknown = errors.New("unknown board")

// All returns every board, sorted by name.
func All() ([]Board, error) {
	names, err := files.ReadDir(".")
	if err != nil {
		return nil, err
	}
	var out []Board
	for _, e := range names {
		data, err := files.ReadFile(e.Name())
		if err != nil {
			return nil, err
		}
		b, err := Parse(e.Name(), data)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	slices.SortFunc(out, func(a, b Board) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// Names returns the names of all boards.
func Names() []string {
	all, _ := All()
	var out []string
	for _, b := range all {
		out = append(out, b.Name)
	}
	return out
}

// Get returns the board called name.
func Get(name string) (Board, error) {
	all, err := All()
	if err != nil {
		return Board{}, err
	}
	for _, b := range all {
		if b.Name == name {
			return b, nil
		}
	}
	return Board{}, fmt.Errorf("%w %q: known boards are %s", ErrUnknown, name, strings.Join(Names(), ", "))
}

// Parse reads one board file, strictly, and checks it.
func Parse(file string, data []byte) (Board, error) {
	var b Board
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&b); err != nil {
		return b, fmt.Errorf("%s: %w", file, err)
	}
	if err := b.check(); err != nil {
		return b, fmt.Errorf("%s: %w", file, err)
	}
	if want := strings.TrimSuffix(path.Base(file), ".yaml"); b.Name != want {
		return b, fmt.Errorf("%s: name %q, want the file's name %q", file, b.Name, want)
	}
	return b, nil
}

var urlRe = regexp.MustCompile(`^https://[^\s]+$`)

// Packages are the Debian packages a board's image is built from: its
// kernel, then its bootloader and its firmware where it has them.
func (b Board) Packages() []string {
	out := []string{b.Kernel.Package}
	for _, p := range []string{b.Boot.Bootloader, b.Boot.Firmware} {
		if p != "" {
			out = append(out, p)
		}
	}
	return out
}

func (b Board) check() error {
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	source := func(fact, url string) {
		if !urlRe.MatchString(url) {
			bad("%s needs a source (an https link), got %q", fact, url)
		}
	}
	if b.Name == "" || b.Description == "" {
		bad("name and description are required")
	}
	if b.Arch != "amd64" && b.Arch != "arm64" {
		bad("arch %q: want amd64 or arm64", b.Arch)
	}
	if b.Kernel.Package == "" {
		bad("kernel.package is required")
	}
	source("kernel", b.Kernel.Source)
	switch b.Boot.Method {
	case BootUEFI:
		if b.Boot.Bootloader == "" {
			bad("boot.bootloader is required for UEFI")
		}
	case BootRPi:
		if b.Boot.Firmware == "" || b.Boot.ConfigTxt == "" {
			bad("boot.firmware and boot.configTxt are required for the Raspberry Pi firmware")
		}
		source("boot.configTxt", b.Boot.ConfigTxtSource)
		if b.DeviceTree == nil {
			bad("deviceTree is required for the Raspberry Pi firmware")
		}
	default:
		bad("boot.method %q: want %s or %s", b.Boot.Method, BootUEFI, BootRPi)
	}
	source("boot", b.Boot.Source)
	if b.DeviceTree != nil {
		if b.DeviceTree.File == "" {
			bad("deviceTree.file is required")
		}
		source("deviceTree", b.DeviceTree.Source)
	}
	if len(b.Console) == 0 {
		bad("console is required")
	}
	source("console", b.ConsoleSource)
	if len(b.Modules.List) == 0 {
		bad("modules.list is required")
	}
	source("modules", b.Modules.Source)
	if b.Partitions.Boot < 33<<20 || b.Partitions.Root <= 0 || b.Partitions.Data <= 0 {
		bad("partitions: boot (at least 33Mi, for FAT32), root and data are required")
	}
	if q := b.QEMU; q != nil {
		if q.Binary == "" || q.Machine == "" || q.CPU == "" || q.Memory < 64 || q.Firmware == "" || q.FirmwarePackage == "" {
			bad("qemu: binary, machine, cpu, memory (at least 64), firmware and firmwarePackage are required")
		}
		source("qemu", q.Source)
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}
