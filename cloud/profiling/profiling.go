// Package profiling serves Go's runtime profiles (net/http/pprof) of a
// process of ote-cloud's over HTTP: the controller's, and each tunnel
// shard's beside it.
package profiling

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"strconv"
	"time"
)

// Serve serves the profiles on addr until stop.
func Serve(ctx context.Context, addr string) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("profiling listener: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, BaseContext: func(net.Listener) context.Context { return ctx }}
	go srv.Serve(ln)
	return func() { srv.Close() }, nil
}

// Beside is the address n ports above addr's, on the same host: where
// the n-th process beside the one on addr serves its profiles. It is
// empty when addr's port is 0 or n is past the last port.
func Beside(addr string, n int) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return ""
	}
	p, err := strconv.Atoi(port)
	if err != nil || p == 0 || p+n > 65535 {
		return ""
	}
	return net.JoinHostPort(host, strconv.Itoa(p+n))
}
