package supervisor

import (
	"sync"
	"time"
)

// Line is one line of a service's output.
type Line struct {
	Time   time.Time `json:"time"`
	Stream string    `json:"stream"` // "stdout", "stderr" or "supervisor"
	Text   string    `json:"text"`
}

// Ring keeps the most recent lines of a service's output and hands new
// lines to subscribers. A subscriber that does not keep up loses lines
// rather than stalling the service.
type Ring struct {
	mu    sync.Mutex
	lines []Line
	next  int // index of the oldest line once full
	full  bool
	subs  map[chan Line]struct{}
}

// NewRing returns a ring holding up to size lines.
func NewRing(size int) *Ring {
	return &Ring{lines: make([]Line, size), subs: make(map[chan Line]struct{})}
}

// Add appends a line, evicting the oldest when full.
func (r *Ring) Add(l Line) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.lines) > 0 {
		r.lines[r.next] = l
		r.next = (r.next + 1) % len(r.lines)
		if r.next == 0 {
			r.full = true
		}
	}
	for c := range r.subs {
		select {
		case c <- l:
		default: // slow reader: drop
		}
	}
}

// Tail returns up to n of the most recent lines, oldest first; n <= 0
// returns all that are kept.
func (r *Ring) Tail(n int) []Line {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.tailLocked(n)
}

func (r *Ring) tailLocked(n int) []Line {
	var all []Line
	if r.full {
		all = append(append(all, r.lines[r.next:]...), r.lines[:r.next]...)
	} else {
		all = append(all, r.lines[:r.next]...)
	}
	if n > 0 && len(all) > n {
		all = all[len(all)-n:]
	}
	return all
}

// Subscribe returns the kept lines and a channel of the lines added after
// them. Call cancel when done; it closes the channel.
func (r *Ring) Subscribe(buffer int) (backlog []Line, lines <-chan Line, cancel func()) {
	c := make(chan Line, buffer)
	r.mu.Lock()
	backlog = r.tailLocked(0)
	r.subs[c] = struct{}{}
	r.mu.Unlock()
	var once sync.Once
	return backlog, c, func() {
		once.Do(func() {
			r.mu.Lock()
			delete(r.subs, c)
			r.mu.Unlock()
			close(c)
		})
	}
}
