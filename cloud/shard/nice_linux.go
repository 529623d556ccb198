package shard

import (
	"fmt"
	"os/exec"
	"runtime"

	"golang.org/x/sys/unix"
)

// StartNiced starts cmd with a niceness delta from this process's: a
// shard runs ahead of the API server and of this process, whose bursts
// of work (a collection's mark workers take every core the runtime finds
// idle) would otherwise leave a shard's socket unread for seconds, and
// its children's packets dropped. On Linux a niceness is a thread's, and
// a child takes that of the thread that forks it; so the thread that
// starts cmd takes the child's niceness for the while, and every thread
// of the child has it from its start. A negative delta needs
// CAP_SYS_NICE: without it, niceErr says so and cmd starts at this
// process's niceness; err is Start's.
func StartNiced(cmd *exec.Cmd, delta int) (niceErr, err error) {
	if delta == 0 {
		return nil, cmd.Start()
	}
	type result struct{ nice, start error }
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		var r result
		tid := unix.Gettid()
		// The kernel's getpriority gives 20 less the niceness.
		raw, err := unix.Getpriority(unix.PRIO_PROCESS, tid)
		if err == nil {
			err = unix.Setpriority(unix.PRIO_PROCESS, tid, 20-raw+delta)
		}
		if err != nil {
			r.nice = fmt.Errorf("niceness %+d: %w", delta, err)
		}
		r.start = cmd.Start()
		// Back to the process's niceness, which a positive delta needs
		// CAP_SYS_NICE for; failing that, the thread stays locked and
		// ends with this goroutine, so no other runs at the child's.
		if r.nice != nil || unix.Setpriority(unix.PRIO_PROCESS, tid, 20-raw) == nil {
			runtime.UnlockOSThread()
		}
		done <- r
	}()
	r := <-done
	return r.nice, r.start
}
