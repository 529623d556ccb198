// Command ote is the OTE appliance: the one binary on an edge box. It runs
// as PID 1 (ote init), supervises the box's process tree, and re-executes
// itself for each component (ote run <component>).
package main

import "github.com/ote-edge/ote/cross/multicall"

func main() {
	(&multicall.Program{
		Name:    "ote",
		Summary: "the OTE edge appliance",
	}).Exit()
}
