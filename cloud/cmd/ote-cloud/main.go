// Command ote-cloud is the OTE cluster controller for the levels above the
// boxes: it serves a tree of edge clusters to operators through kubectl and
// to its children through the QUIC tunnel.
package main

import "github.com/ote-edge/ote/cross/multicall"

func main() {
	(&multicall.Program{
		Name:    "ote-cloud",
		Summary: "the OTE cluster controller",
	}).Exit()
}
