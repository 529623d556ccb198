package board

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/ote-edge/ote/cross/multicall"
)

// Main is `ote-image boards [NAME]`: the boards in a table, or one board's
// facts with their sources.
func Main(_ context.Context, args []string) error {
	fs := multicall.FlagSet("boards", os.Stderr)
	if err := multicall.Parse(fs, args, 1); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		all, err := All()
		if err != nil {
			return err
		}
		return Table(os.Stdout, all)
	}
	b, err := Get(fs.Arg(0))
	if err != nil {
		return err
	}
	return b.Describe(os.Stdout)
}

// Table writes one line per board.
func Table(w io.Writer, boards []Board) error {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "BOARD\tARCH\tKERNEL\tBOOT\tCONSOLE\tBOOT/ROOT/DATA\tDESCRIPTION")
	for _, b := range boards {
		boot := b.Boot.Method
		if b.QEMU != nil {
			boot += ", qemu " + b.QEMU.Machine
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%v/%v/%v\t%s\n", b.Name, b.Arch, b.Kernel.Package, boot,
			b.Console[len(b.Console)-1], b.Partitions.Boot, b.Partitions.Root, b.Partitions.Data, b.Description)
	}
	return tw.Flush()
}

// Describe writes every fact of the board with its source.
func (b Board) Describe(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	row := func(fact, value, source string) { fmt.Fprintf(tw, "%s\t%s\t%s\n", fact, value, source) }
	fmt.Fprintf(tw, "%s: %s (%s)\n\n", b.Name, b.Description, b.Arch)
	fmt.Fprintln(tw, "FACT\tVALUE\tSOURCE")
	row("kernel", b.Kernel.Package, b.Kernel.Source)
	switch b.Boot.Method {
	case BootUEFI:
		row("boot", "UEFI, "+b.Boot.Bootloader, b.Boot.Source)
	case BootRPi:
		row("boot", "Raspberry Pi firmware, "+b.Boot.Firmware, b.Boot.Source)
		row("config.txt", strings.ReplaceAll(strings.TrimSpace(b.Boot.ConfigTxt), "\n", "; "), b.Boot.ConfigTxtSource)
	}
	if b.DeviceTree != nil {
		row("device tree", b.DeviceTree.File, b.DeviceTree.Source)
	}
	row("console", strings.Join(b.Console, " "), b.ConsoleSource)
	row("boot modules", strings.Join(b.Modules.List, " "), b.Modules.Source)
	row("partitions", fmt.Sprintf("boot %v, root %v ×2 (A/B), data %v (grows)", b.Partitions.Boot, b.Partitions.Root, b.Partitions.Data), "")
	if q := b.QEMU; q != nil {
		row("qemu", fmt.Sprintf("%s -M %s -cpu %s -m %d, firmware %s (%s)", q.Binary, q.Machine, q.CPU, q.Memory, q.Firmware, q.FirmwarePackage), q.Source)
	}
	return tw.Flush()
}
