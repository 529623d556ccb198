package tunnel

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/ote-edge/ote/cloud/pki"
)

// loopbackPair is a parent and a child on 127.0.0.1 over real QUIC with
// the tunnel's mutual TLS; it returns the child's stream and the parent's.
func loopbackPair(b *testing.B) (client, server *quic.Stream) {
	b.Helper()
	ca, err := pki.NewCA("bench")
	if err != nil {
		b.Fatal(err)
	}
	pair := func(req pki.Request, chain bool) tls.Certificate {
		certPEM, keyPEM, err := ca.Issue(req)
		if err != nil {
			b.Fatal(err)
		}
		if chain {
			certPEM = append(certPEM, ca.CertPEM...)
		}
		c, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			b.Fatal(err)
		}
		return c
	}
	srvCert := pair(pki.Request{CommonName: ServerName, DNSNames: []string{ServerName}, Server: true, Validity: time.Hour}, true)
	cliCert := pair(pki.Request{CommonName: "box", Client: true, Validity: time.Hour}, false)
	ln, err := quic.ListenAddr("127.0.0.1:0", ServerTLS(srvCert, ca.Cert), QUICConfig())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	accepted := make(chan *quic.Stream, 1)
	go func() {
		conn, err := ln.Accept(ctx)
		if err != nil {
			return
		}
		s, err := conn.AcceptStream(ctx)
		if err != nil {
			return
		}
		accepted <- s
	}()
	conn, err := quic.DialAddr(ctx, ln.Addr().String(), ClientTLS(cliCert, ca.Cert), ChildQUICConfig(0))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.CloseWithError(0, "") })
	client, err = conn.OpenStreamSync(ctx)
	if err != nil {
		b.Fatal(err)
	}
	client.Write([]byte{0}) // the stream opens on the wire with data
	server = <-accepted
	server.Read(make([]byte, 1))
	return client, server
}

// desiredOf is a Desired frame carrying size bytes of manifests.
func desiredOf(size int) *Desired {
	cm, _ := json.Marshal(map[string]any{"apiVersion": "v1", "kind": "ConfigMap", "data": map[string]string{"blob": strings.Repeat("x", size)}})
	return &Desired{Revision: 1, Deployments: []Deployment{{Namespace: "default", Name: "blob", Targets: []string{"box"}, Manifests: []json.RawMessage{cm}}}}
}

// BenchmarkFrames: desired-state frames of 64 KiB through the tunnel,
// encoded, sent over QUIC and decoded.
//
//	go test ./cloud/tunnel -run '^$' -bench 'Frames|RawStream'
func BenchmarkFrames(b *testing.B) {
	client, server := loopbackPair(b)
	m := desiredOf(64 << 10)
	enc, _ := json.Marshal(m)
	b.SetBytes(int64(len(enc)))
	done := make(chan error, 1)
	go func() {
		r := NewReader(server)
		for range b.N {
			if _, err := r.Read(); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	b.ResetTimer()
	for range b.N {
		if err := WriteFrame(client, m); err != nil {
			b.Fatal(err)
		}
	}
	if err := <-done; err != nil {
		b.Fatal(err)
	}
}

// BenchmarkRawStream: the same bytes on a raw quic-go stream, the ceiling
// for the tunnel.
func BenchmarkRawStream(b *testing.B) {
	client, server := loopbackPair(b)
	enc, _ := json.Marshal(desiredOf(64 << 10))
	b.SetBytes(int64(len(enc)))
	done := make(chan error, 1)
	go func() {
		_, err := io.CopyN(io.Discard, server, int64(len(enc))*int64(b.N))
		done <- err
	}()
	b.ResetTimer()
	for range b.N {
		if _, err := client.Write(enc); err != nil {
			b.Fatal(err)
		}
	}
	if err := <-done; err != nil {
		b.Fatal(err)
	}
}
