package shard

import (
	"encoding/binary"
	"errors"
	"io"
	"os"
	"sync"
	"time"
)

// window is how many bytes of a child's control stream one side of a
// shard's channel may send before the other side has taken them: as
// QUIC's flow control does for the stream itself, it holds back a child,
// or the controller, that writes faster than the other side reads.
const window = 64 << 10

// chunk bounds a data frame, so that one child's large frame does not
// hold the channel for long.
const chunk = 16 << 10

// stream is one side's end of a child's control stream on a shard's
// channel. What the other side sends queues here for Read, up to the
// window it was given; Write sends as much as the other side's window
// leaves.
type stream struct {
	id uint32
	ch channel

	mu       sync.Mutex
	queue    [][]byte
	err      error // Read's, once the queue is empty: io.EOF after a fin
	taken    int   // bytes read and not yet credited back
	credit   int   // bytes Write may send
	closed   error // Write's, once the stream or connection ended
	deadline time.Time
	readable chan struct{}
	writable chan struct{}

	// pump, if set, takes what the other side sends, with poll, in place
	// of a reader: it runs in a goroutine of its own while there is
	// something to take, and in none while there is not, so that a shard
	// keeps no goroutine waiting for each idle child.
	pump    func()
	pumping bool
	ends    int // how many times err was set
	polled  int // how many of those poll returned
}

// errIdle is poll's: there is nothing more to take, and the pump stops.
var errIdle = errors.New("nothing to take")

func newStream(ch channel, id uint32) *stream {
	return &stream{id: id, ch: ch, credit: window, readable: make(chan struct{}, 1), writable: make(chan struct{}, 1)}
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// push queues data from the other side.
func (s *stream) push(b []byte) {
	s.mu.Lock()
	if s.err == nil {
		s.queue = append(s.queue, b)
	}
	start := s.startPump()
	s.mu.Unlock()
	signal(s.readable)
	if start {
		go s.pump()
	}
}

// startPump, with s.mu held, reports whether the caller is to start the
// pump: it is set, not running, and has something to take.
func (s *stream) startPump() bool {
	start := s.pump != nil && !s.pumping && (len(s.queue) > 0 || s.ends != s.polled)
	if start {
		s.pumping = true
	}
	return start
}

// end ends Read, once the queue is empty, with err; and Write at once,
// unless err is io.EOF (a fin: the other side may still read). The end
// of the connection after a fin is Read's error from then on.
func (s *stream) end(err error) {
	s.mu.Lock()
	if s.err == nil || errors.Is(s.err, io.EOF) && !errors.Is(err, io.EOF) {
		s.err = err
		s.ends++
	}
	if !errors.Is(err, io.EOF) && s.closed == nil {
		s.closed = err
	}
	start := s.startPump()
	s.mu.Unlock()
	signal(s.readable)
	signal(s.writable)
	if start {
		go s.pump()
	}
}

// deliver takes a frame of the other side's about this stream: its data,
// its fin or its credit. It reports false for any other kind, which the
// caller handles.
func (s *stream) deliver(kind byte, payload []byte) bool {
	switch kind {
	case kindData:
		s.push(payload)
	case kindFin:
		s.end(io.EOF)
	case kindCredit:
		s.grant(payload)
	default:
		return false
	}
	return true
}

// sendClose tells the other side that the connection ended, with code and
// reason.
func (s *stream) sendClose(code uint64, reason string) error {
	return s.ch.sendClose(s.id, code, reason)
}

// grant adds credit from the other side.
func (s *stream) grant(payload []byte) {
	if len(payload) != 4 {
		return
	}
	s.mu.Lock()
	s.credit += int(binary.BigEndian.Uint32(payload))
	s.mu.Unlock()
	signal(s.writable)
}

// Read reads what the other side sent, and gives it back its window as
// it goes.
func (s *stream) Read(p []byte) (int, error) {
	return s.read(func(b []byte) int { return copy(p, b) }, false)
}

// poll is the pump's Read: it returns the next bytes the other side
// sent, as they came, or each end of the stream once (io.EOF after a fin, then the
// connection's end), without waiting. When there is neither it returns
// errIdle, and the pump must return: the next push or end starts it
// again.
func (s *stream) poll() ([]byte, error) {
	var out []byte
	_, err := s.read(func(b []byte) int {
		out = b
		return len(b)
	}, true)
	return out, err
}

// read waits for bytes, or the stream's end, and hands the bytes to take,
// which returns how many it took. As the pump's, it does not wait.
func (s *stream) read(take func([]byte) int, pump bool) (int, error) {
	for {
		s.mu.Lock()
		if len(s.queue) > 0 {
			n := take(s.queue[0])
			if n == len(s.queue[0]) {
				s.queue[0] = nil
				s.queue = s.queue[1:]
			} else {
				s.queue[0] = s.queue[0][n:]
			}
			s.taken += n
			var give int
			if s.taken >= window/4 || len(s.queue) == 0 {
				give, s.taken = s.taken, 0
			}
			s.mu.Unlock()
			if give > 0 {
				s.ch.send(kindCredit, s.id, binary.BigEndian.AppendUint32(nil, uint32(give)))
			}
			return n, nil
		}
		if pump {
			err := s.err
			if s.ends == s.polled {
				err, s.pumping = errIdle, false
			}
			s.polled = s.ends
			s.mu.Unlock()
			return 0, err
		}
		if s.err != nil {
			err := s.err
			s.mu.Unlock()
			return 0, err
		}
		deadline := s.deadline
		s.mu.Unlock()
		if deadline.IsZero() {
			<-s.readable
			continue
		}
		d := time.Until(deadline)
		if d <= 0 {
			return 0, os.ErrDeadlineExceeded
		}
		t := time.NewTimer(d)
		select {
		case <-s.readable:
			t.Stop()
		case <-t.C:
			return 0, os.ErrDeadlineExceeded
		}
	}
}

// SetReadDeadline bounds the wait of Read, as net.Conn's does.
func (s *stream) SetReadDeadline(t time.Time) error {
	s.mu.Lock()
	s.deadline = t
	s.mu.Unlock()
	signal(s.readable)
	return nil
}

// Write sends p, as the other side's window allows.
func (s *stream) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		s.mu.Lock()
		if s.closed != nil {
			err := s.closed
			s.mu.Unlock()
			return written, err
		}
		n := min(len(p), s.credit, chunk)
		s.credit -= n
		s.mu.Unlock()
		if n == 0 {
			<-s.writable
			continue
		}
		if err := s.ch.send(kindData, s.id, p[:n]); err != nil {
			s.end(err)
			return written, err
		}
		written += n
		p = p[n:]
	}
	return written, nil
}

// Close ends this side of the stream: the other side reads io.EOF.
func (s *stream) Close() error {
	s.mu.Lock()
	if s.closed != nil {
		s.mu.Unlock()
		return nil
	}
	s.closed = errors.New("stream closed")
	s.mu.Unlock()
	signal(s.writable)
	return s.ch.send(kindFin, s.id, nil)
}
