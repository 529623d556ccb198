package token

import (
	"crypto/sha256"
	"errors"
	"strings"
	"testing"
)

func TestStringParseRoundTrip(t *testing.T) {
	tok := Generate(sha256.Sum256([]byte("ca")))
	s := tok.String()
	got, err := Parse(s)
	if err != nil || got != tok {
		t.Fatalf("Parse(%q) = %+v, %v; want %+v", s, got, err, tok)
	}
	if len(tok.ID) != 6 || len(tok.Secret) != 16 || strings.Count(s, ".") != 3 {
		t.Errorf("token %q: want ote1.<6>.<16>.<hash>", s)
	}
	other := "x" + tok.Secret[1:]
	if tok.Secret[0] == 'x' {
		other = "y" + tok.Secret[1:]
	}
	if !SecretMatches(tok.Secret, SecretHash(tok.Secret)) || SecretMatches(other, SecretHash(tok.Secret)) {
		t.Error("secretMatches does not tell secrets apart")
	}
}

func TestParseRejects(t *testing.T) {
	good := Generate([32]byte{1}).String()
	parts := strings.Split(good, ".")
	for _, bad := range []struct{ in, want string }{
		{"", "want ote1."},
		{"ote2." + strings.Join(parts[1:], "."), "want ote1."},
		{strings.Join([]string{"ote1", "ABCDEF", parts[2], parts[3]}, "."), "the id"},
		{strings.Join([]string{"ote1", parts[1], "short", parts[3]}, "."), "the secret"},
		{strings.Join([]string{"ote1", parts[1], parts[2], "!!"}, "."), "the CA hash"},
		{strings.Join([]string{"ote1", parts[1], parts[2], "AAAA"}, "."), "the CA hash"},
		{good + ".extra", "want ote1."},
	} {
		_, err := Parse(bad.in)
		if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("Parse(%q) = %v, want ErrMalformed about %s", bad.in, err, bad.want)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add(Generate([32]byte{7}).String())
	f.Add("ote1.abcdef.0123456789abcdef.AAAA")
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := Parse(s)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("Parse error %v is not ErrMalformed", err)
			}
			return
		}
		if again, err := Parse(tok.String()); err != nil || again != tok {
			t.Fatalf("round trip of %q: %+v, %v", s, again, err)
		}
	})
}
