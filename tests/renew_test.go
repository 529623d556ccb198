package tests

import (
	"testing"
	"time"

	"github.com/ote-edge/ote/appliance/statuspage"
)

// Identities renew at 2/3 of their life over the tunnel; a box that was
// off past expiry renews with proof of its old key, unless its cluster
// was deleted (revoked) meanwhile.
func TestCertificateRenewal(t *testing.T) {
	builtBinary(t, "kube")
	const life = 8 * time.Second
	c := startCloud(t, "--data-dir", t.TempDir(), "--api-listen", freeAddr(t), "--cert-validity", life.String())
	b, root := enrolledBox(t, c, "renewer", "site=lab")
	first := b.waitFor("a certificate", 10*time.Second, func(r statuspage.Report) bool { return !r.Uplink.CertNotAfter.IsZero() }).Uplink.CertNotAfter

	// Connected, it renews before expiry and stays connected.
	r := b.waitFor("a renewed certificate", 3*life, func(r statuspage.Report) bool {
		return r.Uplink.CertNotAfter.After(first.Add(2*time.Second)) && r.Uplink.Phase == "connected"
	})
	if got := mustKubectl(t, c.kubeconfig, "", "get", "ec", "renewer", "-o", "jsonpath={.status.certificateNotAfter}"); got != r.Uplink.CertNotAfter.UTC().Format(time.RFC3339) {
		t.Errorf("EdgeCluster certificateNotAfter = %s, box holds %s", got, r.Uplink.CertNotAfter.UTC().Format(time.RFC3339))
	}

	// Off past expiry: it renews with its old key and reconnects.
	b.stop(20 * time.Second)
	time.Sleep(time.Until(r.Uplink.CertNotAfter) + time.Second)
	b = startBox(t, root)
	r = b.waitFor("reconnected after expiry", 30*time.Second, func(r statuspage.Report) bool {
		return r.Uplink.Phase == "connected" && r.Uplink.CertNotAfter.After(time.Now())
	})
	waitPhase(t, c.kubeconfig, "renewer", "Connected")

	// Revoked while off and expired: refused.
	b.stop(20 * time.Second)
	mustKubectl(t, c.kubeconfig, "", "delete", "ec", "renewer")
	time.Sleep(time.Until(r.Uplink.CertNotAfter) + time.Second)
	b = startBox(t, root)
	r = b.waitFor("the refusal", 30*time.Second, func(r statuspage.Report) bool { return r.Uplink.Phase == "refused" })
	if want := "enrollment refused: cluster renewer was revoked"; r.Uplink.Error != want {
		t.Errorf("refusal = %q, want %q", r.Uplink.Error, want)
	}
	b.stop(20 * time.Second)
}
