package enrollment

import "testing"

func TestParseTags(t *testing.T) {
	got, err := parseTags("site=berlin-1,tier=shop")
	if err != nil || got["site"] != "berlin-1" || got["tier"] != "shop" {
		t.Errorf("parseTags = %v, %v", got, err)
	}
	for _, bad := range []string{"site", "=x", "a b=c", "site=berlin 1"} {
		if _, err := parseTags(bad); err == nil {
			t.Errorf("parseTags(%q) accepted", bad)
		}
	}
	if enc := encodeTags(map[string]string{"b": "2", "a": "1"}); enc != "a=1,b=2" || decodeTags(enc)["b"] != "2" {
		t.Errorf("encodeTags = %q", enc)
	}
}
