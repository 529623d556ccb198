// Command ote-initrd is the init of OTE's initramfs (see package
// rootfs/initrd). On failure it says why on the console and exits, and
// the kernel, booted with panic=N, restarts the box.
package main

import (
	"fmt"
	"os"
	"time"

	"github.com/ote-edge/ote/rootfs/initrd"
)

func main() {
	logf := func(format string, args ...any) {
		// The kernel's log reaches every console, before and after /dev.
		msg := fmt.Sprintf("<6>ote-initrd: "+format+"\n", args...)
		if f, err := os.OpenFile("/dev/kmsg", os.O_WRONLY, 0); err == nil {
			f.WriteString(msg)
			f.Close()
			return
		}
		fmt.Fprint(os.Stderr, msg[3:])
	}
	err := initrd.Run(initrd.Config{Root: "/", Sys: "/sys", Dev: "/dev", Wait: 20 * time.Second, Logf: logf, NewDir: "/newroot"})
	logf("cannot boot: %v", err)
	time.Sleep(5 * time.Second) // let the console show it
	os.Exit(1)
}
