//go:build !linux

package shard

import (
	"errors"
	"os/exec"
)

// StartNiced starts cmd at this process's niceness: setting a child's
// is done for Linux only.
func StartNiced(cmd *exec.Cmd, delta int) (niceErr, err error) {
	if delta == 0 {
		return nil, cmd.Start()
	}
	return errors.New("niceness: Linux only"), cmd.Start()
}
