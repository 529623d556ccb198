// Package state is the appliance's local state: kine, the etcd API over a
// single SQLite file in WAL mode on the data partition, served on a unix
// socket, and Store, a small typed client over the etcd v3 API for the
// appliance's own records (device identity, enrollment, configuration).
//
// The state service is the first service of the box's process tree; the
// local Kubernetes runs on the same kine. Writes are acknowledged only
// after SQLite has synced them (synchronous=FULL), so an acknowledged
// write survives a power cut; kine's compaction keeps the file bounded.
package state
