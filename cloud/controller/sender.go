package controller

import (
	"context"
	"log/slog"
	"maps"
	"slices"
	"sync"

	"github.com/ote-edge/ote/cloud/tunnel"
)

// sender sends a child its desired set whenever the set's revision
// differs from the one the child holds. It keeps no goroutine while there
// is nothing to send: a change of the sets kicks every child's sender
// (kickOnChange, one goroutine for the level), and a kicked sender runs
// its rounds in a goroutine that ends when no kick is left. A parent of
// many thousand children waits for changes in one goroutine instead of
// one per child.
//
// The revision, kept in the EdgeCluster's status, changes only when the
// set's content does: a reconnecting child that holds the current
// revision, or a set of the same content (after a failover), is sent
// nothing. The mark was read at connect; this controller is its only
// writer, so it is kept in memory from then on.
//
// A set goes as a change to the one the child holds when this controller
// knows that one: sent earlier in this session, or in an earlier one
// when the child's Hello names it. Otherwise, and when the child asks
// for it, the set goes whole.
type sender struct {
	mu      sync.Mutex
	started bool // after the Welcome: kicks run rounds from then on
	running bool // a goroutine runs rounds
	again   bool // a kick came while it ran: one more round
	whole   bool // the child asked for its whole set
	stopped bool // the session ended, or a send failed
	rounds  sync.WaitGroup

	// Kept by the running rounds alone.
	holds   string         // the hash of the set the child's Hello names
	mark    desiredMark    // the last set's revision and hash
	held    int64          // the revision the child holds
	fresh   bool           // the first round after connect
	base    *sentSet       // the set the child holds, if known here
	pending map[string]any // status fields still to write
	log     *slog.Logger
}

// startSending begins a session's rounds with one for the set as it is
// now. mark was read at connect; first is written with the first mark.
func (c *Controller) startSending(s *session, hello *tunnel.Hello, mark desiredMark, first map[string]any, log *slog.Logger) {
	st := &s.send
	st.holds, st.mark, st.held, st.fresh, st.pending, st.log = hello.Hash, mark, hello.Revision, true, first, log
	c.mu.Lock()
	if prev, ok := c.sent[s.name]; ok && s.capVersion >= 4 && prev.revision == hello.Revision && prev.hash == hello.Hash {
		st.base = &prev
	}
	c.mu.Unlock()
	st.mu.Lock()
	st.started = true
	st.mu.Unlock()
	c.kick(s, false)
}

// stopSending ends a session's rounds and waits for one in progress.
func (c *Controller) stopSending(s *session) {
	s.send.mu.Lock()
	s.send.stopped = true
	s.send.mu.Unlock()
	s.send.rounds.Wait()
}

// kick asks for a round of a session's sender; whole, for its whole set.
func (c *Controller) kick(s *session, whole bool) {
	st := &s.send
	st.mu.Lock()
	defer st.mu.Unlock()
	if !st.started || st.stopped {
		return // the first round, at the start, reads the sets as they are then
	}
	st.whole = st.whole || whole
	if st.running {
		st.again = true
		return
	}
	st.running = true
	st.rounds.Go(func() { c.runRounds(s) })
}

// runRounds runs a session's rounds until no kick is left.
func (c *Controller) runRounds(s *session) {
	st := &s.send
	st.mu.Lock()
	for !st.stopped {
		// A whole set goes after the first round, which answers the
		// child's Hello: as an answer to a set sent in this session.
		whole := st.whole && !st.fresh
		if whole {
			st.whole = false
		}
		st.again = st.whole // one left for the next round
		st.mu.Unlock()
		if whole {
			st.base, st.held = nil, -1 // whole, at the current revision
		}
		err := c.round(s)
		st.mu.Lock()
		if err != nil {
			st.stopped = true
		}
		if !st.again {
			break
		}
	}
	st.running = false
	st.mu.Unlock()
}

// round sends the child its set if the child does not hold it yet.
func (c *Controller) round(s *session) error {
	st := &s.send
	set, revoked, hash := c.desiredFor(s.name)
	next := st.mark
	// Revisions are per parent: a child that holds another set under the
	// same number (from its previous parent) must get this one.
	collides := st.fresh && st.holds != "" && st.holds != hash && st.mark.revision == st.held
	if hash != st.mark.hash || collides {
		next = desiredMark{revision: max(st.mark.revision, st.held) + 1, hash: hash}
		if st.pending == nil {
			st.pending = map[string]any{}
		}
		st.pending["desiredRevision"], st.pending["desiredHash"] = next.revision, hash
	}
	if st.pending != nil {
		// Queued: a set goes out before its mark is written. A parent
		// that restarts in between reads an older mark than the child's,
		// and numbers its next set above the child's.
		c.statusq.set(s.name, st.pending)
		st.pending = nil
	}
	st.mark = next
	if st.fresh && st.holds == hash {
		st.held = st.mark.revision // it holds this content already
	}
	st.fresh = false
	if st.mark.revision == st.held {
		return nil
	}
	sent := newSentSet(s.name, st.mark.revision, hash, set)
	d := &tunnel.Desired{Revision: st.mark.revision, Deployments: set, Revoked: revoked}
	if st.base != nil && st.base.revision != st.mark.revision {
		d = st.base.changeTo(sent, set, revoked)
	}
	if err := s.out.Send(d); err != nil {
		st.log.Debug("send desired", "err", err)
		return err
	}
	c.mu.Lock()
	c.sent[s.name] = sent
	c.mu.Unlock()
	st.base, st.held = &sent, st.mark.revision
	return nil
}

// kickOnChange kicks every connected child's sender whenever the sets
// may have changed: a ClusterDeployment, a subtree's membership or tags,
// or a revocation. changed is the syncer's channel as it was before the
// first child could connect.
func (c *Controller) kickOnChange(ctx context.Context, changed <-chan struct{}) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
		changed = c.sync.changes() // before the kicks: a change during them kicks again
		c.mu.Lock()
		sessions := slices.Collect(maps.Values(c.children))
		c.mu.Unlock()
		for _, s := range sessions {
			c.kick(s, false)
		}
	}
}
