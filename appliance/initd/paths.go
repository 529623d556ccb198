package initd

import "path/filepath"

// Paths is where the box keeps its files.
type Paths struct {
	Boot string // the FAT boot partition: ote/config.yaml, ote/enroll.yaml
	Data string // the ext4 data partition: state.db
	Run  string // tmpfs: sockets, pid file
}

// layout returns the paths under root, or the box's own for root "".
func layout(root string) Paths {
	if root == "" {
		return Paths{Boot: "/boot", Data: "/data", Run: "/run/ote"}
	}
	return Paths{Boot: filepath.Join(root, "boot"), Data: filepath.Join(root, "data"), Run: filepath.Join(root, "run")}
}

// ConfigFile is ote/config.yaml on the boot partition.
func (p Paths) ConfigFile() string { return filepath.Join(p.Boot, "ote", "config.yaml") }

// EnrollFile is ote/enroll.yaml on the boot partition.
func (p Paths) EnrollFile() string { return filepath.Join(p.Boot, "ote", "enroll.yaml") }

// StateDB is the local state's SQLite file.
func (p Paths) StateDB() string { return filepath.Join(p.Data, "state.db") }

// StateSocket is where the state service serves the etcd API.
func (p Paths) StateSocket() string { return filepath.Join(p.Run, "state.sock") }

// PIDFile holds the pid of ote init, for ote reboot and ote poweroff.
func (p Paths) PIDFile() string { return filepath.Join(p.Run, "ote.pid") }
