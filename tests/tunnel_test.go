package tests

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/ote-edge/ote/cloud/enrollment"
	"github.com/ote-edge/ote/cloud/pki"
	"github.com/ote-edge/ote/cloud/token"
	"github.com/ote-edge/ote/cloud/tunnel"
)

// child is a test's enrolled cluster: its key and certificate.
type child struct {
	key  *ecdsa.PrivateKey
	cert tls.Certificate
	ca   *x509.Certificate
	name string
}

func newCSR(t testing.TB) (*ecdsa.PrivateKey, []byte) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "box"}}, key)
	if err != nil {
		t.Fatal(err)
	}
	return key, csr
}

func enroll(t testing.TB, addr string, tok token.Token, name string, tags map[string]string) (*child, error) {
	t.Helper()
	key, csr := newCSR(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resp, err := tunnel.Enroll(ctx, addr, tok.CAHash, &tunnel.EnrollRequest{Token: tok.String(), CSR: csr, Name: name, Tags: tags, DeviceID: "0123456789abcdef"})
	if err != nil {
		return nil, err
	}
	keyPEM, _ := pki.EncodeKey(key)
	pair, err := tls.X509KeyPair(resp.Cert, keyPEM)
	if err != nil {
		t.Fatalf("enrollment answer: %v", err)
	}
	ca, err := pki.ParseCert(resp.CA)
	if err != nil {
		t.Fatal(err)
	}
	return &child{key: key, cert: pair, ca: ca, name: resp.Cluster}, nil
}

// tunnelEnd is a test child's end of a tunnel: the control stream and
// the one reader of it, and the Welcome read from it.
type tunnelEnd struct {
	conn    *quic.Conn
	str     *quic.Stream
	r       *tunnel.Reader
	welcome *tunnel.Welcome
}

// connect opens the child's tunnel and exchanges Hello and Welcome.
func (c *child) connect(t testing.TB, addr string) (*tunnelEnd, error) {
	t.Helper()
	return c.connectWith(t, addr, &tunnel.Hello{CapabilityVersion: tunnel.CapabilityVersion, AgentVersion: "test"})
}

// connectWith is connect with the given Hello. The stream has a read
// deadline for the Welcome; later frames are read with e.r, which may
// hold them already.
func (c *child) connectWith(t testing.TB, addr string, hello *tunnel.Hello) (*tunnelEnd, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := quic.DialAddr(ctx, addr, tunnel.ClientTLS(c.cert, c.ca), tunnel.ChildQUICConfig(0))
	if err != nil {
		return nil, err
	}
	e := &tunnelEnd{conn: conn}
	if e.str, err = conn.OpenStreamSync(ctx); err != nil {
		return e, err
	}
	if err := tunnel.WriteFrame(e.str, hello); err != nil {
		return e, err
	}
	e.str.SetReadDeadline(time.Now().Add(15 * time.Second))
	e.r = tunnel.NewReader(e.str)
	m, err := e.r.Read()
	if err != nil {
		return e, err
	}
	e.welcome, _ = m.(*tunnel.Welcome)
	return e, nil
}

// phase reads an EdgeCluster's status.phase with kubectl.
func phase(t testing.TB, kubeconfig, name string) string {
	t.Helper()
	out, err := kubectl(t, kubeconfig, "", "get", "ec", name, "-o", "jsonpath={.status.phase}")
	if err != nil {
		return "error: " + out
	}
	return out
}

func waitPhase(t testing.TB, kubeconfig, name, want string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if phase(t, kubeconfig, name) == want {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("EdgeCluster %s: phase %q, want %q", name, phase(t, kubeconfig, name), want)
}

func TestTunnelEnrollAndConnect(t *testing.T) {
	builtBinary(t, "kube")
	c := startCloud(t, "--data-dir", t.TempDir(), "--api-listen", freeAddr(t), "--name", "root")
	rc, _ := clientcmd.BuildConfigFromFlags("", c.kubeconfig)
	store := enrollment.Store{Client: kubernetes.NewForConfigOrDie(rc)}
	ctx := context.Background()
	single, err := store.Create(ctx, enrollment.Options{Uses: 1, TTL: time.Hour, Tags: map[string]string{"site": "berlin-1"}})
	if err != nil {
		t.Fatal(err)
	}

	// A box that pins another CA refuses the parent.
	wrongPin := single
	wrongPin.CAHash = sha256.Sum256([]byte("not our CA"))
	if _, err := enroll(t, c.tunnel, wrongPin, "box-1", nil); !errors.Is(err, tunnel.ErrCAMismatch) && !strings.Contains(fmt.Sprint(err), "tree CA") {
		t.Errorf("enrolling against an unpinned CA = %v, want a CA mismatch", err)
	}

	box, err := enroll(t, c.tunnel, single, "box-1", map[string]string{"tier": "shop", "site": "ignored"})
	if err != nil {
		t.Fatalf("enroll: %v", err)
	}
	if leaf, _ := x509.ParseCertificate(box.cert.Certificate[0]); box.name != "box-1" || leaf.Subject.CommonName != "box-1" {
		t.Errorf("enrolled as %q with a certificate for %q; want box-1", box.name, leaf.Subject.CommonName)
	}
	labels := mustKubectl(t, c.kubeconfig, "", "get", "ec", "box-1", "-o", "jsonpath={.metadata.labels}")
	var got map[string]string
	json.Unmarshal([]byte(labels), &got)
	if got["site"] != "berlin-1" || got["tier"] != "shop" {
		t.Errorf("EdgeCluster labels = %v; want the token's site and the box's tier", got)
	}
	if p := phase(t, c.kubeconfig, "box-1"); p != "Pending" {
		t.Errorf("phase after enrollment = %q, want Pending", p)
	}

	// The same single-use token again: refused with the reason.
	var refused *tunnel.RefusedError
	if _, err := enroll(t, c.tunnel, single, "box-2", nil); !errors.As(err, &refused) || refused.Reason != "token already used" {
		t.Errorf("reusing a single-use token = %v, want refused: token already used", err)
	}
	expired, _ := store.Create(ctx, enrollment.Options{TTL: time.Second})
	time.Sleep(1100 * time.Millisecond)
	if _, err := enroll(t, c.tunnel, expired, "box-3", nil); !errors.As(err, &refused) || refused.Reason != "token expired" {
		t.Errorf("an expired token = %v, want refused: token expired", err)
	}

	e, err := box.connect(t, c.tunnel)
	if err != nil || e.welcome == nil || e.welcome.Cluster != "box-1" || e.welcome.Parent != "root" {
		t.Fatalf("connect = %+v, %v; want a Welcome for box-1 from root", e, err)
	}
	waitPhase(t, c.kubeconfig, "box-1", "Connected")
	if v := mustKubectl(t, c.kubeconfig, "", "get", "ec", "box-1", "-o", "jsonpath={.status.agentVersion}"); v != "test" {
		t.Errorf("agentVersion = %q", v)
	}

	// A frame above the size limit ends the connection, nothing more.
	hdr := binary.AppendUvarint([]byte{byte(tunnel.TypeStatus)}, tunnel.MaxFrameSize+1)
	e.str.Write(hdr)
	select {
	case <-e.conn.Context().Done():
	case <-time.After(10 * time.Second):
		t.Error("the parent kept a connection that sent an oversized frame")
	}
	waitPhase(t, c.kubeconfig, "box-1", "Disconnected")

	// A forged certificate (same name, self-signed) and one from a foreign
	// CA are refused in the handshake.
	forger := *box
	self, _ := pki.NewCA("box-1")
	forger.cert = tlsPair(t, self.CertPEM, self.Key)
	if _, err := forger.connect(t, c.tunnel); err == nil {
		t.Error("a self-signed certificate for box-1 was accepted")
	}
	foreign, _ := pki.NewCA("foreign")
	fcert, fkey, _ := foreign.Issue(pki.Request{CommonName: "box-1", Client: true, Validity: time.Hour})
	forger.cert, _ = tls.X509KeyPair(fcert, fkey)
	if _, err := forger.connect(t, c.tunnel); err == nil {
		t.Error("a certificate from a foreign CA was accepted")
	}

	// Reconnect, then delete the EdgeCluster: the tunnel closes and the
	// cluster is refused from then on.
	e, err = box.connect(t, c.tunnel)
	if err != nil {
		t.Fatalf("reconnect: %v", err)
	}
	waitPhase(t, c.kubeconfig, "box-1", "Connected")
	mustKubectl(t, c.kubeconfig, "", "delete", "ec", "box-1")
	select {
	case <-e.conn.Context().Done():
	case <-time.After(10 * time.Second):
		t.Fatal("deleting the EdgeCluster did not close its tunnel")
	}
	if e, err := box.connect(t, c.tunnel); err == nil && e.welcome != nil {
		t.Error("a deleted (revoked) cluster was welcomed back")
	}
}

func tlsPair(t testing.TB, certPEM []byte, key crypto.Signer) tls.Certificate {
	t.Helper()
	keyPEM, _ := pki.EncodeKey(key)
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return pair
}

// A child speaks only for its own subtree: its status reports about
// another cluster are dropped.
func TestStatusOutsideSubtreeIsDropped(t *testing.T) {
	builtBinary(t, "kube")
	c := startCloud(t, "--data-dir", t.TempDir(), "--api-listen", freeAddr(t))
	rc, _ := clientcmd.BuildConfigFromFlags("", c.kubeconfig)
	store := enrollment.Store{Client: kubernetes.NewForConfigOrDie(rc)}
	tok, err := store.Create(context.Background(), enrollment.Options{Uses: 2, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	liar, err := enroll(t, c.tunnel, tok, "liar", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := enroll(t, c.tunnel, tok, "victim", nil); err != nil {
		t.Fatal(err)
	}
	mustKubectl(t, c.kubeconfig, `
apiVersion: ote.dev/v1alpha1
kind: ClusterDeployment
metadata: {name: hello, namespace: default}
spec:
  clusterSelector: {names: [liar, victim]}
  manifests: [{apiVersion: v1, kind: ConfigMap, metadata: {name: hello}}]
`, "apply", "-f", "-")

	e, err := liar.connect(t, c.tunnel)
	if err != nil {
		t.Fatal(err)
	}
	str, r := e.str, e.r
	str.SetReadDeadline(time.Now().Add(20 * time.Second))
	m, err := r.Read()
	d, ok := m.(*tunnel.Desired)
	if err != nil || !ok || len(d.Deployments) != 1 {
		t.Fatalf("liar got %#v, %v; want its desired set", m, err)
	}
	// It acknowledges its own set and claims the victim applied it.
	tunnel.WriteFrame(str, &tunnel.Ack{Revision: d.Revision})
	tunnel.WriteFrame(str, &tunnel.Status{Deployments: []tunnel.DeploymentStatus{
		{Namespace: "default", Name: "hello", Cluster: "liar", Revision: d.Revision, Phase: "Received"},
		{Namespace: "default", Name: "hello", Cluster: "victim", Revision: d.Revision, Phase: "Applied"},
	}})
	deadline := time.Now().Add(20 * time.Second)
	for {
		targeted, delivered, clusters := cdStatusOf(t, c.kubeconfig, "hello")
		if targeted == 2 && delivered == 1 {
			if clusters != "liar=Received,victim=Pending" {
				t.Errorf("status clusters = %s; the victim must stay Pending", clusters)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("status: %d targeted, %d delivered, %s", targeted, delivered, clusters)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
