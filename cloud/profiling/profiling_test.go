package profiling

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
)

func TestServe(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	stop, err := Serve(context.Background(), addr)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	resp, err := http.Get("http://" + addr + "/debug/pprof/heap?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), "heap profile") {
		t.Fatalf("heap profile: %s: %.200s", resp.Status, b)
	}
	if _, err := Serve(context.Background(), addr); err == nil {
		t.Fatal("a second listener on the same address was not refused")
	}
}

func TestBeside(t *testing.T) {
	for _, c := range []struct {
		addr string
		n    int
		want string
	}{
		{"127.0.0.1:6060", 1, "127.0.0.1:6061"},
		{"[::1]:6060", 3, "[::1]:6063"},
		{":6060", 2, ":6062"},
		{"127.0.0.1:0", 1, ""},
		{"127.0.0.1:65535", 1, ""},
		{"127.0.0.1", 1, ""},
		{"127.0.0.1:http", 1, ""},
	} {
		if got := Beside(c.addr, c.n); got != c.want {
			t.Errorf("Beside(%q, %d) = %q, want %q", c.addr, c.n, got, c.want)
		}
	}
}
