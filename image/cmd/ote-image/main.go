// Command ote-image builds flashable OTE disk images for the boards in
// board/ and edits the enrollment file inside an existing image.
package main

import (
	"github.com/ote-edge/ote/board"
	"github.com/ote-edge/ote/cross/multicall"
)

func main() {
	(&multicall.Program{
		Name:    "ote-image",
		Summary: "build OTE disk images",
		Commands: []multicall.Command{
			{Name: "boards", Args: "[BOARD]", Summary: "list the boards, or one board's facts with their sources", Run: board.Main},
			{Name: "build", Args: "--board BOARD --out FILE [--enroll FILE] [--config FILE] [--overlay DIR] [--size SIZE] [--ote PATH] [--initrd PATH] [--cache DIR]", Summary: "build a board's image", Run: build},
			{Name: "enroll", Args: "IMAGE ENROLL.yaml", Summary: "replace the enroll.yaml in an image's boot partition", Run: enroll},
			{Name: "qemu", Args: "[--firmware] [--status ADDR] IMAGE BOARD", Summary: "boot a virtual board's image in QEMU", Run: qemu},
			{Name: "lock", Args: "[--out FILE] [--cache DIR]", Summary: "pin the boards' Debian packages at the mirror's current versions", Run: lock},
		},
	}).Exit()
}
