package netconf

import (
	"errors"
	"testing"
)

func TestFirstWired(t *testing.T) {
	tests := []struct {
		cands []candidate
		want  string
		err   error
	}{
		{[]candidate{
			{name: "wlan0", index: 2, ether: true, physical: true, wireless: true},
			{name: "eth1", index: 4, ether: true, physical: true},
			{name: "lo", index: 1},
			{name: "eth0", index: 3, ether: true, physical: true},
			{name: "veth0", index: 0, ether: true},
		}, "eth0", nil},
		{[]candidate{{name: "lo", index: 1}, {name: "wlan0", index: 2, ether: true, physical: true, wireless: true}}, "", ErrNoWired},
	}
	for _, tt := range tests {
		got, err := firstWired(tt.cands)
		if got != tt.want || !errors.Is(err, tt.err) {
			t.Errorf("firstWired(%v) = %q, %v; want %q, %v", tt.cands, got, err, tt.want, tt.err)
		}
	}
}
