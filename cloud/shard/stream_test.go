package shard

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"
)

// pipeStreams joins two ends of one stream over an in-memory channel,
// each side's frames dispatched as the Pool and a shard do.
func pipeStreams(t *testing.T) (a, b *stream, received func() int) {
	ca, cb := net.Pipe()
	t.Cleanup(func() { ca.Close(); cb.Close() })
	a, b = newStream(newChannel(ca), 1), newStream(newChannel(cb), 1)
	got := make(chan int, 1)
	got <- 0
	dispatch := func(c net.Conn, s *stream, count bool) {
		for {
			kind, _, payload, err := readFrame(c)
			if err != nil {
				s.end(err)
				return
			}
			if count && kind == kindData {
				got <- <-got + len(payload)
			}
			s.deliver(kind, payload)
		}
	}
	go dispatch(ca, a, false)
	go dispatch(cb, b, true)
	return a, b, func() int {
		n := <-got
		got <- n
		return n
	}
}

// A writer sends no more than the window ahead of the reader, and all of
// it arrives, in order, once the reader reads.
func TestStreamWindow(t *testing.T) {
	a, b, received := pipeStreams(t)
	want := make([]byte, 5*window+123)
	for i := range want {
		want[i] = byte(i * 7)
	}
	wrote := make(chan error, 1)
	go func() {
		_, err := a.Write(want)
		wrote <- err
	}()
	time.Sleep(200 * time.Millisecond)
	if n := received(); n != window {
		t.Fatalf("%d bytes sent to a reader that read none, want the window, %d", n, window)
	}
	select {
	case err := <-wrote:
		t.Fatalf("the write of %d bytes ended (%v) before the reader read", len(want), err)
	default:
	}
	got, err := io.ReadAll(io.LimitReader(b, int64(len(want))))
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read %d bytes (%v), equal: %v; want %d", len(got), err, bytes.Equal(got, want), len(want))
	}
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
}

// A read waits no longer than its deadline, and the stream goes on; a fin
// ends the reads with io.EOF, and the connection's end after it, with its
// own error.
func TestStreamDeadlineAndEnds(t *testing.T) {
	a, b, _ := pipeStreams(t)
	b.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	buf := make([]byte, 16)
	if _, err := b.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a read past its deadline: %v", err)
	}
	b.SetReadDeadline(time.Time{})
	if _, err := a.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	a.Close()
	if _, err := a.Write([]byte("more")); err == nil {
		t.Error("a write after Close succeeded")
	}
	if n, err := b.Read(buf); err != nil || string(buf[:n]) != "hello" {
		t.Fatalf("read %q, %v", buf[:n], err)
	}
	if _, err := b.Read(buf); !errors.Is(err, io.EOF) {
		t.Fatalf("after the fin: %v, want io.EOF", err)
	}
	gone := errors.New("connection gone")
	b.end(gone)
	if _, err := b.Read(buf); !errors.Is(err, gone) {
		t.Fatalf("after the connection's end: %v, want its error", err)
	}
	if _, err := b.Write([]byte("x")); !errors.Is(err, gone) {
		t.Fatalf("a write after the connection's end: %v, want its error", err)
	}
}

// A pump runs only while there is something to take: each push or end
// starts it if it is idle, it takes every byte in order and each end once
// (the fin, then the connection's end), and it is stopped in between.
func TestStreamPump(t *testing.T) {
	_, b, _ := pipeStreams(t)
	type taken struct {
		data string
		err  error
	}
	got := make(chan taken, 16)
	var runs, running int
	var mu sync.Mutex
	b.mu.Lock()
	b.pump = func() {
		mu.Lock()
		runs++
		running++
		if running > 1 {
			t.Error("two pumps at once")
		}
		mu.Unlock()
		defer func() {
			mu.Lock()
			running--
			mu.Unlock()
		}()
		for {
			d, err := b.poll()
			if err == errIdle {
				return
			}
			got <- taken{string(d), err}
		}
	}
	b.mu.Unlock()
	next := func(want taken) {
		t.Helper()
		select {
		case g := <-got:
			if g.data != want.data || !errors.Is(g.err, want.err) {
				t.Fatalf("the pump took %q, %v; want %q, %v", g.data, g.err, want.data, want.err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("the pump took nothing; want %q, %v", want.data, want.err)
		}
	}
	idle := func() {
		t.Helper()
		for range 100 {
			b.mu.Lock()
			p := b.pumping
			b.mu.Unlock()
			if !p {
				select {
				case g := <-got:
					t.Fatalf("the pump took %q, %v, with nothing sent", g.data, g.err)
				default:
				}
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Fatal("the pump still runs with nothing to take")
	}
	idle()
	b.deliver(kindData, []byte("one"))
	next(taken{"one", nil})
	idle()
	b.deliver(kindData, []byte("two"))
	b.deliver(kindData, []byte("three"))
	b.deliver(kindFin, nil)
	next(taken{"two", nil})
	next(taken{"three", nil})
	next(taken{"", io.EOF})
	idle()
	b.deliver(kindFin, nil) // a second fin is no new end
	idle()
	gone := errors.New("connection gone")
	b.end(gone)
	next(taken{"", gone})
	idle()
	b.end(errors.New("later")) // the first end stands
	idle()
	mu.Lock()
	defer mu.Unlock()
	if runs < 3 {
		t.Errorf("the pump ran %d times, want at least 3: once for each thing sent after it stopped", runs)
	}
}
