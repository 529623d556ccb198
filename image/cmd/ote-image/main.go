// Command ote-image builds flashable OTE disk images for the boards in
// board/ and edits the enrollment file inside an existing image.
package main

import "github.com/ote-edge/ote/cross/multicall"

func main() {
	(&multicall.Program{
		Name:    "ote-image",
		Summary: "build OTE disk images",
	}).Exit()
}
