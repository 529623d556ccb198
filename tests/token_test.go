package tests

import (
	"context"
	"crypto/sha256"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/ote-edge/ote/appliance/config"
	"github.com/ote-edge/ote/cloud/enrollment"
	"github.com/ote-edge/ote/cloud/token"
)

// Enrollment tokens against the real API server: create (plain and as an
// enroll.yaml), list, revoke, and the refusals a box would hear.
func TestEnrollmentTokens(t *testing.T) {
	builtBinary(t, "kube")
	c := startCloud(t, "--data-dir", t.TempDir(), "--api-listen", freeAddr(t))
	cloudBin := builtBinary(t, "ote-cloud")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	rc, err := clientcmd.BuildConfigFromFlags("", c.kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	store := enrollment.Store{Client: kubernetes.NewForConfigOrDie(rc)}
	ca, err := store.TreeCA(ctx, false)
	if err != nil {
		t.Fatalf("tree CA: %v", err)
	}
	caHash := ca.Hash()

	// A later start reads what the first stored; starts that race to
	// store a missing one all come out with the one stored first.
	if again, err := store.TreeCA(ctx, true); err != nil || again.Hash() != caHash {
		t.Fatalf("tree CA read again: %v; want the stored one", err)
	}
	if err := store.Client.CoreV1().Secrets(enrollment.Namespace).Delete(ctx, "ote-tunnel-reset-key", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	keys, errs := make([][32]byte, 4), make([]error, 4)
	var wg sync.WaitGroup
	for i := range keys {
		wg.Go(func() { keys[i], errs[i] = store.ResetKey(ctx) })
	}
	wg.Wait()
	stored, err := store.ResetKey(ctx)
	for i := range keys {
		if errs[i] != nil || err != nil || keys[i] != stored || stored == ([32]byte{}) {
			t.Fatalf("racing starts' reset keys: %v, %v; want all the stored one", errs, err)
		}
	}

	r := runBinary(t, cloudBin, "token", "create", "--kubeconfig", c.kubeconfig, "--enroll-yaml", "--server", "10.0.2.2:7443",
		"--tags", "site=berlin-1,tier=shop", "--uses", "1", "--ttl", "1h")
	if r.code != 0 {
		t.Fatalf("token create --enroll-yaml = exit %d: %s", r.code, r.stderr)
	}
	enroll, err := config.ParseEnroll("enroll.yaml", []byte(r.stdout))
	if err != nil || enroll.Server != "10.0.2.2:7443" {
		t.Fatalf("the printed enroll.yaml does not parse: %v\n%s", err, r.stdout)
	}
	single, err := token.Parse(enroll.Token)
	if err != nil || single.CAHash != caHash {
		t.Fatalf("token %q: %v; want one pinning the tree CA", enroll.Token, err)
	}

	r = runBinary(t, cloudBin, "token", "create", "--kubeconfig", c.kubeconfig, "--uses", "0", "--ttl", "0", "--name-prefix", "shop")
	unlimited, err := token.Parse(strings.TrimSpace(r.stdout))
	if r.code != 0 || err != nil {
		t.Fatalf("token create = exit %d, %q, %v", r.code, r.stdout+r.stderr, err)
	}

	r = runBinary(t, cloudBin, "token", "list", "--kubeconfig", c.kubeconfig)
	if r.code != 0 || !strings.Contains(r.stdout, single.ID) || !strings.Contains(r.stdout, "site=berlin-1,tier=shop") || !strings.Contains(r.stdout, "unlimited") {
		t.Errorf("token list = exit %d:\n%s%s", r.code, r.stdout, r.stderr)
	}

	now := time.Now()
	rec, err := store.Redeem(ctx, single, caHash, now)
	if err != nil || rec.Tags["site"] != "berlin-1" || rec.UsesLeft != 0 {
		t.Errorf("first redeem = %+v, %v; want the tags and no uses left", rec, err)
	}
	for _, c := range []struct {
		name string
		tok  token.Token
		ca   [32]byte
		at   time.Time
		want error
	}{
		{"reused single-use token", single, caHash, now, enrollment.ErrUsedUp},
		{"expired token", unlimitedWithTTL(t, ctx, store), caHash, now.Add(2 * time.Hour), enrollment.ErrExpired},
		{"wrong secret", withSecret(unlimited, "0000000000000000"), caHash, now, enrollment.ErrUnknown},
		{"unknown id", withID(unlimited, "zzzzzz"), caHash, now, enrollment.ErrUnknown},
		{"foreign tree", unlimited, sha256.Sum256([]byte("another CA")), now, enrollment.ErrWrongTree},
	} {
		if _, err := store.Redeem(ctx, c.tok, c.ca, c.at); !errors.Is(err, c.want) {
			t.Errorf("%s: Redeem = %v, want %v", c.name, err, c.want)
		}
	}
	for range 3 {
		if rec, err := store.Redeem(ctx, unlimited, caHash, now); err != nil || rec.UsesLeft != -1 || rec.NamePrefix != "shop" {
			t.Errorf("unlimited token: Redeem = %+v, %v", rec, err)
		}
	}

	r = runBinary(t, cloudBin, "token", "revoke", "--kubeconfig", c.kubeconfig, unlimited.ID)
	if r.code != 0 {
		t.Fatalf("token revoke = exit %d: %s", r.code, r.stderr)
	}
	if _, err := store.Redeem(ctx, unlimited, caHash, now); !errors.Is(err, enrollment.ErrUnknown) {
		t.Errorf("revoked token: Redeem = %v, want ErrUnknown", err)
	}
	r = runBinary(t, cloudBin, "token", "revoke", "--kubeconfig", c.kubeconfig, unlimited.ID)
	if r.code != 1 || !strings.Contains(r.stderr, "unknown or revoked") {
		t.Errorf("revoking twice = exit %d, %q", r.code, r.stderr)
	}

	for _, args := range [][]string{
		{"token", "create", "--kubeconfig", c.kubeconfig, "--tags", "a b=c"},
		{"token", "create", "--kubeconfig", c.kubeconfig, "--enroll-yaml"},
		{"token", "create", "--kubeconfig", c.kubeconfig, "--uses", "-1"},
		{"token", "bogus"},
		{"token", "revoke", "--kubeconfig", c.kubeconfig},
	} {
		if r := runBinary(t, cloudBin, args...); r.code != 2 {
			t.Errorf("ote-cloud %v = exit %d (%s), want 2", args, r.code, r.stderr)
		}
	}
}

func unlimitedWithTTL(t *testing.T, ctx context.Context, s enrollment.Store) token.Token {
	t.Helper()
	tok, err := s.Create(ctx, enrollment.Options{TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func withSecret(t token.Token, s string) token.Token { t.Secret = s; return t }
func withID(t token.Token, id string) token.Token    { t.ID = id; return t }
