// Command ote is the OTE appliance: the one binary on an edge box. It runs
// as PID 1 (ote init), supervises the box's process tree, and re-executes
// itself for each component (ote run <component>).
package main

import (
	"syscall"

	"github.com/ote-edge/ote/appliance/component"
	"github.com/ote-edge/ote/appliance/initd"
	"github.com/ote-edge/ote/appliance/statuspage"
	"github.com/ote-edge/ote/cross/multicall"
)

func main() {
	(&multicall.Program{
		Name:    "ote",
		Summary: "the OTE edge appliance",
		Commands: []multicall.Command{
			{Name: "init", Args: "[--root DIR] [--status-listen ADDR] [--cgroup-root DIR]", Summary: "supervise the box (PID 1, or under DIR)", Run: initd.Main},
			{Name: "run", Args: "<component> [flags]", Summary: "run one component of the box (started by ote init)", Run: component.Main},
			{Name: "status", Args: "[--addr HOST:PORT] [--json]", Summary: "print the box's status", Run: statuspage.Main},
			{Name: "reboot", Args: "[--root DIR]", Summary: "stop the box in order and reboot", Run: initd.SignalMain(syscall.SIGTERM)},
			{Name: "poweroff", Args: "[--root DIR]", Summary: "stop the box in order and power off", Run: initd.SignalMain(syscall.SIGUSR2)},
		},
	}).Exit()
}
