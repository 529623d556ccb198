// Package token is the enrollment token's format, shared by the box that
// presents one and the parent that checks it. A token reads
// ote1.<id>.<secret>.<ca>: a 6-character id, a 16-character secret and
// the base64url SHA-256 of the tree CA's certificate, which the box pins.
package token

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// Token is what a box presents to enroll.
type Token struct {
	ID     string
	Secret string
	// CAHash is the SHA-256 of the tree CA's certificate (DER).
	CAHash [32]byte
}

const prefix = "ote1"

var (
	idRe     = regexp.MustCompile(`^[a-z0-9]{6}$`)
	secretRe = regexp.MustCompile(`^[a-z0-9]{16}$`)
)

// String encodes the token.
func (t Token) String() string {
	return strings.Join([]string{prefix, t.ID, t.Secret, base64.RawURLEncoding.EncodeToString(t.CAHash[:])}, ".")
}

// ErrMalformed is returned by Parse for a string that is not a token.
var ErrMalformed = errors.New("malformed enrollment token")

// Parse decodes a token, saying what is wrong with a bad one.
func Parse(s string) (Token, error) {
	parts := strings.Split(strings.TrimSpace(s), ".")
	if len(parts) != 4 || parts[0] != prefix {
		return Token{}, fmt.Errorf("%w: want %s.<id>.<secret>.<ca hash>", ErrMalformed, prefix)
	}
	t := Token{ID: parts[1], Secret: parts[2]}
	if !idRe.MatchString(t.ID) {
		return Token{}, fmt.Errorf("%w: the id is not 6 lowercase letters or digits", ErrMalformed)
	}
	if !secretRe.MatchString(t.Secret) {
		return Token{}, fmt.Errorf("%w: the secret is not 16 lowercase letters or digits", ErrMalformed)
	}
	h, err := base64.RawURLEncoding.DecodeString(parts[3])
	if err != nil || len(h) != 32 {
		return Token{}, fmt.Errorf("%w: the CA hash is not a base64url SHA-256", ErrMalformed)
	}
	copy(t.CAHash[:], h)
	return t, nil
}

// Generate makes a new token for the CA with the given fingerprint.
func Generate(caHash [32]byte) Token {
	return Token{ID: randomAlnum(6), Secret: randomAlnum(16), CAHash: caHash}
}

// SecretHash is what a parent stores for a token's secret.
func SecretHash(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// SecretMatches compares a presented secret with a stored hash in
// constant time.
func SecretMatches(secret, hash string) bool {
	return subtle.ConstantTimeCompare([]byte(SecretHash(secret)), []byte(hash)) == 1
}

// randomAlnum draws n characters uniformly from [a-z0-9].
func randomAlnum(n int) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	out := make([]byte, 0, n)
	var buf [32]byte
	for len(out) < n {
		rand.Read(buf[:])
		for _, c := range buf {
			if c < 252 && len(out) < n { // 252 = 7*36: no modulo bias
				out = append(out, alphabet[c%36])
			}
		}
	}
	return string(out)
}
