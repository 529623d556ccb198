package shard

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// A frame on a shard's channel is a kind, the stream it is about (0 for
// the channel itself), and its payload's length, then the payload.
const (
	kindSetup       = 's' // Pool → shard, first: JSON setup
	kindCertificate = 'k' // Pool → shard: JSON certificate
	kindOpen        = 'o' // shard → Pool: a child's connection, JSON open
	kindData        = 'd' // bytes of a child's control stream
	kindFin         = 'f' // the sender's side of the control stream ended
	kindClose       = 'c' // the connection ended: an 8-byte code, then the reason
	kindCredit      = 'w' // the receiver took 4-byte count more bytes of the stream
)

// frameHeader is a frame's kind, stream and payload length.
const frameHeader = 9

// maxFrame bounds a frame's payload.
const maxFrame = 64 << 10

func header(kind byte, id uint32, n int) []byte {
	h := make([]byte, frameHeader)
	h[0] = kind
	binary.BigEndian.PutUint32(h[1:], id)
	binary.BigEndian.PutUint32(h[5:], uint32(n))
	return h
}

// readFrame reads the next frame.
func readFrame(r io.Reader) (kind byte, id uint32, payload []byte, err error) {
	var h [frameHeader]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, 0, nil, err
	}
	id = binary.BigEndian.Uint32(h[1:])
	n := binary.BigEndian.Uint32(h[5:])
	if n > maxFrame {
		return 0, 0, nil, fmt.Errorf("shard channel: frame of %d bytes, limit %d", n, maxFrame)
	}
	payload = make([]byte, n)
	if _, err := io.ReadFull(r, payload); err != nil {
		if err == io.EOF { // a header without its payload
			err = io.ErrUnexpectedEOF
		}
		return 0, 0, nil, err
	}
	return h[0], id, payload, nil
}

func closePayload(code uint64, reason string) []byte {
	return append(binary.BigEndian.AppendUint64(nil, code), reason...)
}

func parseClose(payload []byte) (uint64, string, error) {
	if len(payload) < 8 {
		return 0, "", errors.New("close frame too short")
	}
	return binary.BigEndian.Uint64(payload), string(payload[8:]), nil
}

// setup is what a shard is told when it starts.
type setup struct {
	Shards, Shard int
	ResetKey      [32]byte
	MaxHandshakes int
	KeepAlive     time.Duration
	// MemoryLimit, if set, is the shard's GOMEMLIMIT, with GOGC off and
	// its collections started early (package gcpace).
	MemoryLimit int64
	Root        []byte // DER of the tree's root CA, for client certificates
	Certificate certificate
	// Procs is the shard's GOMAXPROCS.
	Procs int
	// Profiling, if set, is where the shard serves its pprof profiles.
	Profiling string
}

// certificate is the chain a shard serves and its key.
type certificate struct {
	Chain [][]byte // DER, leaf first
	Key   []byte   // PKCS #8
}

func marshalCertificate(c *tls.Certificate) (certificate, error) {
	key, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
	if err != nil {
		return certificate{}, err
	}
	return certificate{Chain: c.Certificate, Key: key}, nil
}

func (c certificate) tls() (*tls.Certificate, error) {
	if len(c.Chain) == 0 {
		return nil, errors.New("no certificate chain")
	}
	key, err := x509.ParsePKCS8PrivateKey(c.Key)
	if err != nil {
		return nil, fmt.Errorf("certificate key: %w", err)
	}
	return &tls.Certificate{Certificate: c.Chain, PrivateKey: key}, nil
}

// open introduces a child's connection.
type open struct {
	ALPN   string
	Remote string   // the child's UDP address
	Peers  [][]byte // DER, leaf first
}

// channel is one side of a shard's channel: frames from many goroutines,
// each written whole.
type channel struct {
	c  net.Conn
	mu *sync.Mutex
}

func newChannel(c net.Conn) channel { return channel{c: c, mu: new(sync.Mutex)} }

func (ch channel) send(kind byte, id uint32, payload []byte) error {
	bufs := net.Buffers{header(kind, id, len(payload)), payload}
	ch.mu.Lock()
	defer ch.mu.Unlock()
	_, err := bufs.WriteTo(ch.c)
	return err
}

// sendClose tells the other side that stream id's connection ended, with
// code and reason.
func (ch channel) sendClose(id uint32, code uint64, reason string) error {
	return ch.send(kindClose, id, closePayload(code, reason))
}

func (ch channel) sendJSON(kind byte, id uint32, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if len(b) > maxFrame {
		return fmt.Errorf("shard channel: message of %d bytes, limit %d", len(b), maxFrame)
	}
	return ch.send(kind, id, b)
}

// socketPair makes a connected pair of Unix stream sockets: the first as
// a net.Conn of this process, the second as a file to pass on.
func socketPair() (net.Conn, *os.File, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("socketpair: %w", err)
	}
	local, err := fileConn(os.NewFile(uintptr(fds[0]), "socketpair"))
	if err != nil {
		unix.Close(fds[1])
		return nil, nil, err
	}
	return local, os.NewFile(uintptr(fds[1]), "socketpair"), nil
}

// fileConn makes f, a socket, a net.Conn, and closes f.
func fileConn(f *os.File) (net.Conn, error) {
	defer f.Close()
	return net.FileConn(f)
}
