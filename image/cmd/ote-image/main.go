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
		},
	}).Exit()
}
