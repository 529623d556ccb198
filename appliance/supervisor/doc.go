// Package supervisor runs the box's process tree: a table of services, each
// started after the services it depends on are ready, restarted by its
// policy with backoff, and stopped in reverse dependency order.
//
// A service runs in its own process group, so stopping it signals
// everything it started: SIGTERM to the group, a grace period, then SIGKILL
// to the group. Its stdout and stderr go line by line into a ring buffer
// (for the status page) and to the console with the service's name as a
// prefix. Where cgroup v2 is available each service gets a cgroup with its
// memory and pid limits, and its usage is reported.
//
// An exit with status 125 (ExitNoRestart) means "do not restart me",
// whatever the policy.
package supervisor
