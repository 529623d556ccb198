package supervisor

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"sync"
	"syscall"
	"time"
)

// A Probe tells whether a running service is ready. Check is called
// repeatedly until it returns nil; it must return promptly when ctx ends.
// A probe that runs a program starts it through r, so that the
// supervisor's reaper knows the child.
type Probe interface {
	Check(ctx context.Context, r Runner) error
	String() string
}

// HTTPProbe is ready when a GET of URL answers with a 2xx status.
type HTTPProbe struct {
	URL    string
	Client *http.Client // for TLS settings; nil means http.DefaultClient
}

// Check implements Probe.
func (p HTTPProbe) Check(ctx context.Context, _ Runner) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.URL, nil)
	if err != nil {
		return err
	}
	client := p.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("GET %s: %s", p.URL, resp.Status)
	}
	return nil
}

func (p HTTPProbe) String() string { return "http " + p.URL }

// SocketProbe is ready when a connection to the unix socket at Path opens.
type SocketProbe struct{ Path string }

// Check implements Probe.
func (p SocketProbe) Check(ctx context.Context, _ Runner) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", p.Path)
	if err != nil {
		return err
	}
	return c.Close()
}

func (p SocketProbe) String() string { return "socket " + p.Path }

// ExecProbe is ready when Argv runs and exits 0 within Timeout (default 5s).
type ExecProbe struct {
	Argv    []string
	Timeout time.Duration
}

// Check implements Probe.
func (p ExecProbe) Check(ctx context.Context, r Runner) error {
	timeout := p.Timeout
	if timeout == 0 {
		timeout = 5 * time.Second
	}
	var out limitedBuffer
	proc, err := r.Start(StartSpec{Argv: p.Argv, Stdout: &out, Stderr: &out})
	if err != nil {
		return err
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-proc.Done():
	case <-ctx.Done():
		proc.Signal(syscall.SIGKILL)
		<-proc.Done()
		return ctx.Err()
	case <-t.C:
		proc.Signal(syscall.SIGKILL)
		<-proc.Done()
		return fmt.Errorf("%q: no answer within %v", p.Argv, timeout)
	}
	if e := proc.Exit(); !e.Success() {
		return fmt.Errorf("%q: %v: %s", p.Argv, e, bytes.TrimSpace(out.Bytes()))
	}
	return nil
}

// limitedBuffer keeps the first 4 KiB written to it.
type limitedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if room := 4096 - b.buf.Len(); room > 0 {
		b.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (b *limitedBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Bytes()
}

func (p ExecProbe) String() string { return fmt.Sprintf("exec %q", p.Argv) }
