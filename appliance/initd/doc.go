// Package initd is `ote init`, the box's supervisor of everything.
//
// As PID 1 it mounts the kernel filesystems, sets the hostname, loads the
// board's modules, brings up loopback, reaps orphans, runs the service
// tree and the status page, and turns SIGTERM/SIGINT (reboot), SIGUSR2
// (power off) and SIGUSR1 (halt) into an ordered shutdown followed by
// sync and reboot(2).
//
// Started with a root directory (`ote init --root DIR`) it is an ordinary
// process: every file it writes stays under DIR/boot, DIR/data and
// DIR/run, the PID-1 duties are skipped, SIGTERM/SIGINT stop the tree
// and exit, and a reboot from the status page restarts ote init in place.
package initd
