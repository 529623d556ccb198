package tunnel

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"
)

// EnrollRequest asks for an identity in the tree: with a token, or, for a
// cluster whose certificate expired, with that certificate and a proof
// that it holds the key: an ASN.1 ECDSA signature over the SHA-256 of CSR.
type EnrollRequest struct {
	Token   string `json:"token,omitempty"`
	OldCert []byte `json:"oldCert,omitempty"` // PEM
	Proof   []byte `json:"proof,omitempty"`
	// CSR is a DER certificate request for the key the box keeps.
	CSR  []byte            `json:"csr"`
	Name string            `json:"name,omitempty"` // desired cluster name
	Tags map[string]string `json:"tags,omitempty"` // desired tags, merged over the token's
	// DeviceID names the box when it asks for no name.
	DeviceID string `json:"deviceId"`
	// Level asks for an intermediate CA: the enrolling cluster is a lower
	// level of the tree that enrolls children of its own. The token must
	// allow it.
	Level bool `json:"level,omitempty"`
}

// EnrollResponse carries the identity, or why there is none.
type EnrollResponse struct {
	Cluster string `json:"cluster,omitempty"`
	// Cert is the PEM certificate for the CSR; CA the tree CA's PEM.
	Cert  []byte            `json:"cert,omitempty"`
	CA    []byte            `json:"ca,omitempty"`
	Tags  map[string]string `json:"tags,omitempty"` // the tags the cluster got
	Error string            `json:"error,omitempty"`
}

// Hello opens a child's control stream.
type Hello struct {
	CapabilityVersion int    `json:"cap"`
	AgentVersion      string `json:"agentVersion"`
	// Revision is the revision of desired state the child holds (0: none).
	Revision int64 `json:"revision"`
	// Hash is DesiredHash of the set the child holds: a parent that would
	// send the same set (after a failover, say) sends nothing.
	Hash string `json:"hash,omitempty"`
	// Tags are the child's tags, for a parent that did not enroll it.
	Tags map[string]string `json:"tags,omitempty"`
	// Serves is the tunnel address a level child serves its own children
	// on: its parent tells it to the level's siblings' children as an
	// alternate. Empty for a box.
	Serves string `json:"serves,omitempty"`
}

// Welcome answers Hello, and comes again whenever the alternates change.
type Welcome struct {
	CapabilityVersion int    `json:"cap"`
	Cluster           string `json:"cluster"` // as the parent knows the child
	Parent            string `json:"parent"`
	// Alternates are other parents to try when this one is lost, best
	// first: the parent's sibling levels, then its own parent.
	Alternates []string `json:"alternates,omitempty"`
	// Siblings are where the parent's other level children serve: a
	// level child's own children take them as alternates.
	Siblings []string `json:"siblings,omitempty"`
	// Report is the last Status frame of the child's that the parent
	// applied (cap 4). A child that sent exactly that much to this parent
	// goes on with changes; any other sends its whole report again.
	Report ReportMark `json:"report,omitzero"`
}

// ReportMark names a Status frame: the report it belongs to, begun by a
// Reset, and its number in that report's frames.
type ReportMark struct {
	Epoch uint64 `json:"epoch"`
	Seq   int64  `json:"seq"`
}

// Desired is the desired set for the child's subtree at a revision,
// whole, or (capability 4) as a change to the set the child holds.
type Desired struct {
	Revision    int64        `json:"revision"`
	Deployments []Deployment `json:"deployments"`
	// Revoked are the tree's revoked clusters with when each was revoked:
	// certificates issued before then are refused at every level. They
	// always come whole.
	Revoked map[string]time.Time `json:"revoked,omitempty"`

	// Base, when not zero, makes this a change to the set held at
	// revision Base, whose hash is BaseHash: Deployments are the ones
	// added or changed, Removed the keys (namespace/name) of the ones
	// gone, and Hash the hash of the set that results. A child that
	// cannot apply it answers with an Ack asking for the whole set.
	Base     int64    `json:"base,omitempty"`
	BaseHash string   `json:"baseHash,omitempty"`
	Removed  []string `json:"removed,omitempty"`
	Hash     string   `json:"hash,omitempty"`
}

// ErrBaseMismatch means a change to a desired set does not apply to the
// set held.
var ErrBaseMismatch = errors.New("the change is to a desired set other than the one held")

// Apply returns the whole set d makes of held: d itself when it is whole,
// else held with d's changes, checked against d's hashes.
func (d *Desired) Apply(held *Desired) (*Desired, error) {
	if d.Base == 0 {
		return d, nil
	}
	if held == nil || held.Revision != d.Base || DesiredHash(held.Deployments, held.Revoked) != d.BaseHash {
		return nil, ErrBaseMismatch
	}
	byKey := make(map[string]Deployment, len(held.Deployments)+len(d.Deployments))
	for _, dep := range held.Deployments {
		byKey[dep.Key()] = dep
	}
	for _, dep := range d.Deployments {
		byKey[dep.Key()] = dep
	}
	for _, k := range d.Removed {
		delete(byKey, k)
	}
	keys := slices.Sorted(maps.Keys(byKey))
	deps := make([]Deployment, 0, len(keys))
	for _, k := range keys {
		deps = append(deps, byKey[k])
	}
	if DesiredHash(deps, d.Revoked) != d.Hash {
		return nil, fmt.Errorf("%w: the result's hash differs", ErrBaseMismatch)
	}
	return &Desired{Revision: d.Revision, Deployments: deps, Revoked: d.Revoked}, nil
}

// DesiredHash identifies a desired set by content. Both ends compute it
// over the same encoding.
func DesiredHash(deps []Deployment, revoked map[string]time.Time) string {
	if deps == nil {
		deps = []Deployment{}
	}
	b, _ := json.Marshal(struct {
		D []Deployment         `json:"d"`
		R map[string]time.Time `json:"r,omitempty"`
	}{deps, revoked})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// Deployment is one ClusterDeployment as it travels down.
type Deployment struct {
	Namespace string            `json:"namespace"`
	Name      string            `json:"name"`
	Targets   []string          `json:"targets"` // cluster names in the child's subtree
	Manifests []json.RawMessage `json:"manifests"`
}

// Key names a deployment in its set: namespace/name. Sets are sorted by it.
func (d Deployment) Key() string { return d.Namespace + "/" + d.Name }

// PartHash identifies one deployment of a set by content, to tell which
// changed between two sets.
func (d Deployment) PartHash() string {
	b, _ := json.Marshal(d)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:16])
}

// Ack says which revision of desired state the child now holds.
type Ack struct {
	Revision int64 `json:"revision"`
	// Resend asks for the whole set: a change did not apply (cap 4).
	Resend bool `json:"resend,omitempty"`
}

// Status reports the child's subtree as changes to what it reported
// before on this connection. A report that starts with Reset replaces
// everything reported before, up to and including the frame with Sync;
// a long report spans several frames.
type Status struct {
	Reset       bool               `json:"reset,omitempty"`
	Sync        bool               `json:"sync,omitempty"`
	Clusters    []ClusterStatus    `json:"clusters,omitempty"`
	Deployments []DeploymentStatus `json:"deployments,omitempty"`
	// Removed are clusters no longer below the child.
	Removed []string `json:"removed,omitempty"`
	// Revoked are revocations made at or below the child.
	Revoked map[string]time.Time `json:"revoked,omitempty"`
	// Mark numbers the frame (cap 4); see Welcome.Report.
	Mark ReportMark `json:"mark,omitzero"`
}

// ClusterStatus is one cluster below the child (never the child itself).
type ClusterStatus struct {
	Name          string            `json:"name"`
	Tags          map[string]string `json:"tags,omitempty"`
	Parent        string            `json:"parent"` // its parent, the child or a level below it
	Phase         string            `json:"phase"`  // Connected or Disconnected
	LastSeen      time.Time         `json:"lastSeen,omitzero"`
	AgentVersion  string            `json:"agentVersion,omitempty"`
	CertNotBefore time.Time         `json:"certNotBefore,omitzero"`
	CertNotAfter  time.Time         `json:"certNotAfter,omitzero"`
}

// DeploymentStatus is a deployment's state on one cluster.
type DeploymentStatus struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Cluster   string `json:"cluster"`
	Revision  int64  `json:"revision"`
	Phase     string `json:"phase"` // Delivered, Received, Applied, Failed
	Message   string `json:"message,omitempty"`
}

// Renew asks for a fresh certificate for the cluster's new key.
type Renew struct {
	CSR []byte `json:"csr"` // DER
}

// Renewed answers Renew.
type Renewed struct {
	Cert  []byte `json:"cert,omitempty"` // PEM
	Error string `json:"error,omitempty"`
}

func (*EnrollRequest) frameType() Type  { return TypeEnrollRequest }
func (*Renew) frameType() Type          { return TypeRenew }
func (*Renewed) frameType() Type        { return TypeRenewed }
func (*EnrollResponse) frameType() Type { return TypeEnrollResponse }
func (*Hello) frameType() Type          { return TypeHello }
func (*Welcome) frameType() Type        { return TypeWelcome }
func (*Desired) frameType() Type        { return TypeDesired }
func (*Ack) frameType() Type            { return TypeAck }
func (*Status) frameType() Type         { return TypeStatus }
