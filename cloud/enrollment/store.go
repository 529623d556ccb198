// Package enrollment is the parent's side of enrollment: the tokens an
// operator creates for boxes (ote-cloud token), kept as Secrets in the
// ote-system namespace the way Kubernetes keeps bootstrap tokens (the
// Secret holds the secret's hash, never the secret), and the tree's CA,
// kept in the same namespace, whose fingerprint every token carries.
package enrollment

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

	"github.com/ote-edge/ote/cloud/pki"
	"github.com/ote-edge/ote/cloud/token"
)

// Namespace holds the tokens and the tree CA.
const Namespace = "ote-system"

const secretType corev1.SecretType = "ote.dev/enrollment-token"

const (
	caSecretName = "ote-tree-ca"
	labelKind    = "ote.dev/kind"
)

// Options describe a new token.
type Options struct {
	Tags       map[string]string // given to every cluster enrolled with it
	TTL        time.Duration     // 0: no expiry
	Uses       int               // 0: unlimited
	NamePrefix string            // enrolled clusters are named <prefix>-<device id> unless they ask for a name
	// Level lets the token enroll a lower level of the tree (an
	// ote-cloud serve --parent), which gets an intermediate CA.
	Level bool
}

// Record is a token as stored, without its secret.
type Record struct {
	ID         string            `json:"id"`
	Tags       map[string]string `json:"tags,omitempty"`
	NamePrefix string            `json:"namePrefix,omitempty"`
	Level      bool              `json:"level,omitempty"`
	Expires    time.Time         `json:"expires,omitzero"`
	UsesLeft   int               `json:"usesLeft"` // -1: unlimited
	Created    time.Time         `json:"created"`
}

// Refusals, each with the reason a box shows.
var (
	ErrUnknown   = errors.New("unknown or revoked token")
	ErrExpired   = errors.New("token expired")
	ErrUsedUp    = errors.New("token already used")
	ErrWrongTree = errors.New("token is for another tree (CA fingerprint differs)")
)

// Store keeps tokens in a cluster.
type Store struct {
	Client kubernetes.Interface
}

// EnsureNamespace creates the ote-system namespace if it is missing.
func (s Store) EnsureNamespace(ctx context.Context) error {
	_, err := s.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: Namespace}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create namespace %s: %w", Namespace, err)
	}
	return nil
}

// TreeCA returns the tree's CA, creating and storing it on first use when
// create is set. Creation races are settled by the API server: the loser
// reads the winner's CA.
func (s Store) TreeCA(ctx context.Context, create bool) (*pki.CA, error) {
	var sec *corev1.Secret
	var err error
	if create {
		sec, err = s.getOrCreate(ctx, caSecretName, func() (*corev1.Secret, error) {
			ca, err := pki.NewCA("ote tree")
			if err != nil {
				return nil, err
			}
			keyPEM, err := pki.EncodeKey(ca.Key)
			if err != nil {
				return nil, err
			}
			return &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{labelKind: "tree-ca"}},
				Type:       corev1.SecretTypeTLS,
				Data:       map[string][]byte{corev1.TLSCertKey: ca.CertPEM, corev1.TLSPrivateKeyKey: keyPEM},
			}, nil
		})
	} else {
		sec, err = s.Client.CoreV1().Secrets(Namespace).Get(ctx, caSecretName, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("no tree CA in %s/%s: is ote-cloud serve running against this cluster?", Namespace, caSecretName)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("tree CA: %w", err)
	}
	root := sec.Data[rootKey]
	if len(root) == 0 { // the root level: the CA is its own root
		root = sec.Data[corev1.TLSCertKey]
	}
	return pki.ParseIntermediate(sec.Data[corev1.TLSCertKey], sec.Data[corev1.TLSPrivateKeyKey], root)
}

// getOrCreate reads a Secret of the ote-system namespace, or, if there is
// none, stores the one fresh makes under that name. Of two starts that
// race to create it, the API server keeps the first, and both return it.
func (s Store) getOrCreate(ctx context.Context, name string, fresh func() (*corev1.Secret, error)) (*corev1.Secret, error) {
	secrets := s.Client.CoreV1().Secrets(Namespace)
	sec, err := secrets.Get(ctx, name, metav1.GetOptions{})
	if !apierrors.IsNotFound(err) {
		return sec, err
	}
	if err := s.EnsureNamespace(ctx); err != nil {
		return nil, err
	}
	if sec, err = fresh(); err != nil {
		return nil, err
	}
	sec.Name, sec.Namespace = name, Namespace
	created, err := secrets.Create(ctx, sec, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return secrets.Get(ctx, name, metav1.GetOptions{})
	}
	return created, err
}

// rootKey holds the tree's root certificate in a lower level's CA Secret.
const rootKey = "ca.crt"

// SaveLevelCA stores a lower level's intermediate CA, given by its parent,
// as this level's tree CA: what it signs its children's identities with.
func (s Store) SaveLevelCA(ctx context.Context, ca *pki.CA) error {
	if err := s.EnsureNamespace(ctx); err != nil {
		return err
	}
	keyPEM, err := pki.EncodeKey(ca.Key)
	if err != nil {
		return err
	}
	err = s.PutSecret(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: caSecretName, Namespace: Namespace, Labels: map[string]string{labelKind: "tree-ca"}},
		Type:       corev1.SecretTypeTLS,
		Data:       map[string][]byte{corev1.TLSCertKey: ca.Chain, corev1.TLSPrivateKeyKey: keyPEM, rootKey: ca.RootPEM},
	})
	if err != nil {
		return fmt.Errorf("store the level's CA: %w", err)
	}
	return nil
}

// resetKeySecretName holds the key of the tunnel's stateless resets.
const resetKeySecretName = "ote-tunnel-reset-key"

// ResetKey is the key this level's tunnel derives its stateless reset
// tokens from, created at first start. It must outlive the process: a
// restarted parent answers its old connections' packets with resets
// made from it, so that children notice at once instead of timing out.
func (s Store) ResetKey(ctx context.Context) ([32]byte, error) {
	var key [32]byte
	sec, err := s.getOrCreate(ctx, resetKeySecretName, func() (*corev1.Secret, error) {
		fresh := make([]byte, len(key))
		rand.Read(fresh)
		return &corev1.Secret{Data: map[string][]byte{"key": fresh}}, nil
	})
	if err != nil {
		return key, fmt.Errorf("tunnel reset key: %w", err)
	}
	if len(sec.Data["key"]) != len(key) {
		return key, fmt.Errorf("tunnel reset key: %s/%s holds %d bytes, want %d", Namespace, resetKeySecretName, len(sec.Data["key"]), len(key))
	}
	copy(key[:], sec.Data["key"])
	return key, nil
}

// PutSecret creates or replaces a Secret in the ote-system namespace,
// creating the namespace first if it is missing.
func (s Store) PutSecret(ctx context.Context, sec *corev1.Secret) error {
	if err := s.EnsureNamespace(ctx); err != nil {
		return err
	}
	sec.Namespace = Namespace
	secrets := s.Client.CoreV1().Secrets(Namespace)
	old, err := secrets.Get(ctx, sec.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		_, err = secrets.Create(ctx, sec, metav1.CreateOptions{})
	case err == nil:
		sec.ResourceVersion = old.ResourceVersion
		_, err = secrets.Update(ctx, sec, metav1.UpdateOptions{})
	}
	return err
}

// ApplyConfigMap sets a ConfigMap's data in the ote-system namespace with
// server-side apply, as manager.
func (s Store) ApplyConfigMap(ctx context.Context, name, manager string, data map[string]string) error {
	_, err := s.Client.CoreV1().ConfigMaps(Namespace).Apply(ctx, corev1ac.ConfigMap(name, Namespace).WithData(data),
		metav1.ApplyOptions{FieldManager: manager, Force: true})
	return err
}

// ConfigMapData reads a ConfigMap's data in the ote-system namespace; a
// missing one reads as empty.
func (s Store) ConfigMapData(ctx context.Context, name string) (map[string]string, error) {
	cm, err := s.Client.CoreV1().ConfigMaps(Namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return cm.Data, nil
}

// Create makes a token for the tree CA and stores it.
func (s Store) Create(ctx context.Context, opts Options) (token.Token, error) {
	ca, err := s.TreeCA(ctx, false)
	if err != nil {
		return token.Token{}, err
	}
	t := token.Generate(ca.Hash())
	now := time.Now().UTC()
	data := map[string][]byte{
		"token-id":    []byte(t.ID),
		"secret-hash": []byte(token.SecretHash(t.Secret)),
		"tags":        []byte(encodeTags(opts.Tags)),
		"name-prefix": []byte(opts.NamePrefix),
		"level":       []byte(strconv.FormatBool(opts.Level)),
		"uses-left":   []byte(strconv.Itoa(usesLeft(opts.Uses))),
		"created":     []byte(now.Format(time.RFC3339)),
	}
	if opts.TTL > 0 {
		data["expiration"] = []byte(now.Add(opts.TTL).Format(time.RFC3339))
	}
	sec := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: secretName(t.ID), Namespace: Namespace, Labels: map[string]string{labelKind: "enrollment-token"}},
		Type:       secretType,
		Data:       data,
	}
	if _, err := s.Client.CoreV1().Secrets(Namespace).Create(ctx, sec, metav1.CreateOptions{}); err != nil {
		return token.Token{}, fmt.Errorf("store token: %w", err)
	}
	return t, nil
}

func usesLeft(uses int) int {
	if uses <= 0 {
		return -1
	}
	return uses
}

func secretName(id string) string { return "ote-token-" + id }

// List returns the stored tokens, oldest first.
func (s Store) List(ctx context.Context) ([]Record, error) {
	list, err := s.Client.CoreV1().Secrets(Namespace).List(ctx, metav1.ListOptions{LabelSelector: labelKind + "=enrollment-token"})
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	var out []Record
	for i := range list.Items {
		if r, err := record(&list.Items[i]); err == nil {
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Created.Before(out[j].Created) })
	return out, nil
}

// Revoke deletes a token; boxes can no longer enroll with it.
func (s Store) Revoke(ctx context.Context, id string) error {
	err := s.Client.CoreV1().Secrets(Namespace).Delete(ctx, secretName(id), metav1.DeleteOptions{})
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("token %s: %w", id, ErrUnknown)
	}
	return err
}

// Redeem checks a token presented for enrollment and uses it up once.
// It returns the token's record, or one of the refusal errors.
func (s Store) Redeem(ctx context.Context, t token.Token, caHash [32]byte, now time.Time) (Record, error) {
	if t.CAHash != caHash {
		return Record{}, ErrWrongTree
	}
	var rec Record
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		sec, err := s.Client.CoreV1().Secrets(Namespace).Get(ctx, secretName(t.ID), metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return ErrUnknown
		}
		if err != nil {
			return err
		}
		if sec.Type != secretType || !token.SecretMatches(t.Secret, string(sec.Data["secret-hash"])) {
			return ErrUnknown
		}
		if rec, err = record(sec); err != nil {
			return err
		}
		if !rec.Expires.IsZero() && now.After(rec.Expires) {
			return ErrExpired
		}
		switch {
		case rec.UsesLeft == 0:
			return ErrUsedUp
		case rec.UsesLeft > 0:
			rec.UsesLeft--
			sec.Data["uses-left"] = []byte(strconv.Itoa(rec.UsesLeft))
			_, err = s.Client.CoreV1().Secrets(Namespace).Update(ctx, sec, metav1.UpdateOptions{})
			return err
		}
		return nil
	})
	return rec, err
}

func record(sec *corev1.Secret) (Record, error) {
	r := Record{
		ID:         string(sec.Data["token-id"]),
		Tags:       decodeTags(string(sec.Data["tags"])),
		NamePrefix: string(sec.Data["name-prefix"]),
		Level:      string(sec.Data["level"]) == "true",
	}
	var err error
	if r.UsesLeft, err = strconv.Atoi(string(sec.Data["uses-left"])); err != nil {
		return r, fmt.Errorf("token %s: bad uses-left: %w", r.ID, err)
	}
	r.Created, _ = time.Parse(time.RFC3339, string(sec.Data["created"]))
	if e := sec.Data["expiration"]; len(e) > 0 {
		if r.Expires, err = time.Parse(time.RFC3339, string(e)); err != nil {
			return r, fmt.Errorf("token %s: bad expiration: %w", r.ID, err)
		}
	}
	return r, nil
}

// encodeTags writes tags as sorted k=v pairs joined by commas.
func encodeTags(tags map[string]string) string {
	pairs := make([]string, 0, len(tags))
	for k, v := range tags {
		pairs = append(pairs, k+"="+v)
	}
	sort.Strings(pairs)
	return strings.Join(pairs, ",")
}

func decodeTags(s string) map[string]string {
	if s == "" {
		return nil
	}
	tags := map[string]string{}
	for _, p := range strings.Split(s, ",") {
		k, v, _ := strings.Cut(p, "=")
		tags[k] = v
	}
	return tags
}
