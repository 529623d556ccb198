package tunnel

import (
	"encoding/json"
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
}

// Welcome answers Hello.
type Welcome struct {
	CapabilityVersion int    `json:"cap"`
	Cluster           string `json:"cluster"` // as the parent knows the child
	Parent            string `json:"parent"`
	// Alternates are other parents to try when this one is lost.
	Alternates []string `json:"alternates,omitempty"`
}

// Desired is the desired set for the child's subtree at a revision.
type Desired struct {
	Revision    int64        `json:"revision"`
	Deployments []Deployment `json:"deployments"`
}

// Deployment is one ClusterDeployment as it travels down.
type Deployment struct {
	Namespace string            `json:"namespace"`
	Name      string            `json:"name"`
	Targets   []string          `json:"targets"` // cluster names in the child's subtree
	Manifests []json.RawMessage `json:"manifests"`
}

// Ack says which revision of desired state the child now holds.
type Ack struct {
	Revision int64 `json:"revision"`
}

// Status reports the child's subtree.
type Status struct {
	Clusters    []ClusterStatus    `json:"clusters,omitempty"`
	Deployments []DeploymentStatus `json:"deployments,omitempty"`
}

// ClusterStatus is one cluster below the child, or the child itself.
type ClusterStatus struct {
	Name     string            `json:"name"`
	Tags     map[string]string `json:"tags,omitempty"`
	LastSeen time.Time         `json:"lastSeen"`
}

// DeploymentStatus is a deployment's state on one cluster.
type DeploymentStatus struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Cluster   string `json:"cluster"`
	Revision  int64  `json:"revision"`
	Phase     string `json:"phase"` // Received, Applied, Failed
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
