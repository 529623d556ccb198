package state

import "time"

// The appliance's own records. Later components add theirs here.
const (
	DeviceKey Key[Device]     = "device"
	UplinkKey Key[Uplink]     = "uplink"
	ConfigKey Key[ConfigInfo] = "config"
)

// Device is the box's identity, created at first boot.
type Device struct {
	ID        string    `json:"id"` // random, stable across reboots
	CreatedAt time.Time `json:"createdAt"`
	// PasswordHash is the bcrypt hash of the generated device password,
	// used when config.yaml sets none.
	PasswordHash string `json:"passwordHash,omitempty"`
}

// Uplink is the box's identity in its tree and its link to the parent,
// as the controller component last reported it.
type Uplink struct {
	Phase        string            `json:"phase"` // not enrolled, enrolling, refused, connecting, connected, disconnected
	Cluster      string            `json:"cluster,omitempty"`
	Tags         map[string]string `json:"tags,omitempty"`
	Server       string            `json:"server,omitempty"`
	Parent       string            `json:"parent,omitempty"`
	Alternates   []string          `json:"alternates,omitempty"`
	RTTMillis    float64           `json:"rttMillis,omitempty"`
	Error        string            `json:"error,omitempty"`
	CertNotAfter time.Time         `json:"certNotAfter,omitzero"`
	Since        time.Time         `json:"since,omitzero"`
	Revision     int64             `json:"revision,omitempty"` // of desired state held
}

// ConfigInfo records the configuration the box last booted with.
type ConfigInfo struct {
	Hash    string    `json:"hash"` // sha256 of the configuration in effect
	Errors  []string  `json:"errors,omitempty"`
	Applied time.Time `json:"applied"`
}
