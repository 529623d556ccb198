package state

import "time"

// The appliance's own records. Later components add theirs here.
const (
	DeviceKey     Key[Device]     = "device"
	EnrollmentKey Key[Enrollment] = "enrollment"
	ConfigKey     Key[ConfigInfo] = "config"
)

// Device is the box's identity, created at first boot.
type Device struct {
	ID        string    `json:"id"` // random, stable across reboots
	CreatedAt time.Time `json:"createdAt"`
	// PasswordHash is the bcrypt hash of the generated device password,
	// used when config.yaml sets none.
	PasswordHash string `json:"passwordHash,omitempty"`
}

// Enrollment is where the box is in joining its parent.
type Enrollment struct {
	Phase   string    `json:"phase"` // e.g. "not enrolled", "enrolled", "refused"
	Cluster string    `json:"cluster,omitempty"`
	Error   string    `json:"error,omitempty"`
	Updated time.Time `json:"updated"`
}

// ConfigInfo records the configuration the box last booted with.
type ConfigInfo struct {
	Hash    string    `json:"hash"` // sha256 of the configuration in effect
	Errors  []string  `json:"errors,omitempty"`
	Applied time.Time `json:"applied"`
}
