package controller

import (
	"context"
	"crypto/x509"
	"log/slog"
	"maps"
	"slices"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/ote-edge/ote/cloud/tunnel"
)

// claim is a child's report of one cluster below it.
type claim struct {
	st tunnel.ClusterStatus
	at time.Time // when this level heard it
}

// The subtree below a level is what its children report, each for its
// own. Reports can disagree for a moment while a cluster moves (a
// failover, a return): the cluster belongs to the child whose report says
// Connected, the latest such report winning; a cluster connected here
// directly belongs to no child.

// ownerLocked returns the child through which a cluster below a child is
// reached, and that child's report of it. c.mu is held.
func (c *Controller) ownerLocked(name string) (string, claim, bool) {
	if _, direct := c.children[name]; direct {
		return "", claim{}, false
	}
	var via string
	var best claim
	var bestLive bool
	for child, claims := range c.claims {
		cl, ok := claims[name]
		if !ok {
			continue
		}
		live := cl.st.Phase == "Connected" && c.children[child] != nil
		switch {
		case via == "",
			live && !bestLive,
			live == bestLive && cl.at.After(best.at):
			via, best, bestLive = child, cl, live
		}
	}
	if via == "" {
		return "", claim{}, false
	}
	if !bestLive && best.st.Phase == "Connected" {
		best.st.Phase = "Disconnected" // its child is gone
	}
	return via, best, true
}

// membersLocked returns the clusters reached through child, with their
// tags: the child itself and the clusters below it. c.mu is held.
func (c *Controller) membersLocked(child string, labels func(string) map[string]string) map[string]map[string]string {
	out := map[string]map[string]string{child: labels(child)}
	for name, cl := range c.claims[child] {
		if via, _, ok := c.ownerLocked(name); ok && via == child {
			tags := labels(name)
			if tags == nil {
				tags = cl.st.Tags
			}
			out[name] = tags
		}
	}
	return out
}

// applyClusters takes a child's report on the clusters below it.
func (c *Controller) applyClusters(child string, st *tunnel.Status, log *slog.Logger) {
	now := time.Now()
	c.mu.Lock()
	claims := c.claims[child]
	if claims == nil {
		claims = map[string]claim{}
		c.claims[child] = claims
	}
	touched := map[string]bool{child: true}
	if st.Reset {
		c.resetting[child] = map[string]bool{}
	}
	seen := c.resetting[child]
	for _, cs := range st.Clusters {
		_, direct := c.children[cs.Name]
		if cs.Name == child || cs.Name == c.cfg.Name || direct || !clusterNameRe.MatchString(cs.Name) {
			log.Warn("dropped a report on a cluster outside the child's subtree", "about", cs.Name)
			continue
		}
		switch cs.Phase {
		case "Pending", "Connected", "Disconnected":
		default:
			log.Warn("dropped a cluster report with an unknown phase", "about", cs.Name, "phase", cs.Phase)
			continue
		}
		claims[cs.Name] = claim{st: cs, at: now}
		touched[cs.Name] = true
		if seen != nil {
			seen[cs.Name] = true
		}
	}
	for _, name := range st.Removed {
		if _, ok := claims[name]; ok {
			delete(claims, name)
			touched[name] = true
		}
	}
	if st.Sync && seen != nil {
		for name := range claims {
			if !seen[name] {
				delete(claims, name)
				touched[name] = true
			}
		}
		delete(c.resetting, child)
	}
	c.mu.Unlock()
	c.markDirty(slices.Collect(maps.Keys(touched))...)
	if len(touched) > 1 {
		c.sync.notify() // membership may have changed
	}
}

// childGone marks what a child reported as unreachable through it.
func (c *Controller) childGone(child string) {
	c.mu.Lock()
	names := slices.Collect(maps.Keys(c.claims[child]))
	delete(c.resetting, child)
	c.mu.Unlock()
	c.markDirty(names...)
	if len(names) > 0 {
		c.sync.notify()
	}
}

// markDirty queues clusters whose EdgeCluster this level must bring up to
// date.
func (c *Controller) markDirty(names ...string) {
	if len(names) == 0 {
		return
	}
	c.mu.Lock()
	for _, n := range names {
		c.dirty[n] = true
	}
	c.mu.Unlock()
	select {
	case c.dirtyKick <- struct{}{}:
	default:
	}
	c.reportChanged()
}

// writeClusters keeps the EdgeCluster objects of clusters below children
// true to the reports, until ctx ends.
func (c *Controller) writeClusters(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.dirtyKick:
		}
		// Let a burst of reports settle into one round of writes.
		select {
		case <-ctx.Done():
			return
		case <-time.After(50 * time.Millisecond):
		}
		c.mu.Lock()
		names := slices.Collect(maps.Keys(c.dirty))
		c.dirty = map[string]bool{}
		c.mu.Unlock()
		var failed []string
		for _, name := range names {
			if err := c.writeCluster(ctx, name); err != nil && ctx.Err() == nil {
				c.cfg.Log.Warn("EdgeCluster of a cluster below", "cluster", name, "err", err)
				failed = append(failed, name)
			}
		}
		if len(failed) > 0 {
			time.AfterFunc(time.Second, func() { c.markDirty(failed...) })
		}
	}
}

// writeCluster brings one EdgeCluster up to date with what this level
// knows: a direct child gets its subtree size; a cluster below a child
// gets the report of the child it is reached through, or is forgotten when
// no child reports it any more.
func (c *Controller) writeCluster(ctx context.Context, name string) error {
	c.mu.Lock()
	_, direct := c.children[name]
	via, cl, below := c.ownerLocked(name)
	if below {
		if at, ok := c.revoked[name]; ok && !cl.st.CertNotBefore.Add(5*time.Minute).After(at) {
			below = false // revoked: the report will go once the revocation is down there
		}
	}
	size := c.subtreeSizeLocked(name)
	c.mu.Unlock()
	entry, exists := c.registry.get(name)
	switch {
	case direct || (exists && entry.parent == "" && !below):
		if exists && (entry.subtreeSize != int64(size) || entry.nextHop != name) {
			c.statusq.set(name, map[string]any{"subtreeSize": size, "nextHop": name})
		}
		return nil
	case !below:
		if !exists {
			return nil
		}
		c.forget(name)
		return c.registry.delete(ctx, name)
	}
	status := map[string]any{"phase": cl.st.Phase, "nextHop": via, "subtreeSize": 1}
	if !cl.st.LastSeen.IsZero() {
		status["lastSeen"] = cl.st.LastSeen.UTC().Format(time.RFC3339)
	}
	if cl.st.AgentVersion != "" {
		status["agentVersion"] = cl.st.AgentVersion
	}
	if !cl.st.CertNotAfter.IsZero() {
		status["certificateNotAfter"] = cl.st.CertNotAfter.UTC().Format(time.RFC3339)
	}
	if !exists {
		err := c.registry.create(ctx, newObject(name, cl.st.Tags, cl.st.Parent, false), status)
		if !apierrors.IsAlreadyExists(err) {
			return err
		}
	}
	if entry.parent != cl.st.Parent {
		if err := c.registry.setSpec(ctx, name, map[string]any{"parent": cl.st.Parent}); err != nil {
			return err
		}
	}
	if exists && entry.phase == cl.st.Phase && entry.nextHop == via && entry.agentVersion == cl.st.AgentVersion &&
		entry.notAfter.Equal(cl.st.CertNotAfter.Truncate(time.Second)) && entry.lastSeen.Equal(cl.st.LastSeen.Truncate(time.Second)) {
		return nil
	}
	c.statusq.set(name, status)
	return nil
}

// subtreeSizeLocked counts a direct child and the clusters reached
// through it.
func (c *Controller) subtreeSizeLocked(child string) int {
	size := 1
	for n := range c.claims[child] {
		if v, _, ok := c.ownerLocked(n); ok && v == child {
			size++
		}
	}
	return size
}

// forget notes that this level deletes an EdgeCluster itself, for a
// cluster that left: that deletion revokes nothing.
func (c *Controller) forget(name string) {
	c.mu.Lock()
	c.forgetting[name] = true
	c.mu.Unlock()
}

// Revocations: deleting an EdgeCluster revokes the certificates issued to
// that cluster until then, at this level and, as the revocation travels up
// in status reports and down in desired sets, everywhere in the tree. A
// cluster enrolled again later gets a newer certificate, which passes.

// issuedAt is when a certificate was issued: pki backdates NotBefore by
// five minutes for the clocks of small boxes.
func issuedAt(cert *x509.Certificate) time.Time { return cert.NotBefore.Add(5 * time.Minute) }

// revokedLocked says whether cert, for cluster name, was revoked.
func (c *Controller) revokedLocked(name string, cert *x509.Certificate) bool {
	at, ok := c.revoked[name]
	return ok && !issuedAt(cert).After(at)
}

// Revoke records revocations (made here, or heard from the tree) and
// closes the tunnels of the children they revoke.
func (c *Controller) Revoke(ctx context.Context, revoked map[string]time.Time) {
	c.mu.Lock()
	var changed, idle []string
	var closing []*session
	for name, at := range revoked {
		if old, ok := c.revoked[name]; ok && !at.After(old) {
			continue
		}
		c.revoked[name] = at.UTC()
		changed = append(changed, name)
		if s := c.children[name]; s == nil {
			idle = append(idle, name)
		} else if c.revokedLocked(name, s.cert) {
			closing = append(closing, s)
		}
	}
	c.mu.Unlock()
	if len(changed) == 0 {
		return
	}
	for _, s := range closing {
		c.cfg.Log.Info("revoked: closing tunnel", "cluster", s.name)
		s.conn.CloseWithError(tunnel.CloseRevoked, "cluster "+s.name+" was revoked")
	}
	for _, name := range idle {
		if e, ok := c.registry.get(name); ok && e.parent == "" && e.phase != "Revoked" {
			c.statusq.set(name, map[string]any{"phase": "Revoked"})
		}
	}
	c.markDirty(changed...)
	if err := c.saveRevoked(ctx); err != nil {
		c.cfg.Log.Warn("keep revocations", "err", err)
	}
	c.sync.notify()
	c.reportChanged()
}

// revokedCopy returns the revocations, pruned of those older than any
// certificate they could refuse.
func (c *Controller) revokedCopy() map[string]time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	horizon := time.Now().Add(-c.cfg.CertValidity - c.cfg.RenewGrace)
	out := make(map[string]time.Time, len(c.revoked))
	for n, at := range c.revoked {
		if at.After(horizon) {
			out[n] = at
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// Alternates: a child that loses this level tries, in order, this level's
// sibling levels and then this level's own parent. A level learns both
// from its parent's Welcome (SetUpstream); the root has neither. Each
// level child says in Hello where it serves its own children.

// SetUpstream tells the controller where its own parent is and where its
// parent's other level children serve, and updates every child.
func (c *Controller) SetUpstream(parent string, siblings []string) {
	c.mu.Lock()
	same := c.upParent == parent && slices.Equal(c.upSiblings, siblings)
	c.upParent, c.upSiblings = parent, slices.Clone(siblings)
	c.mu.Unlock()
	if !same {
		c.welcomeAll()
	}
}

// welcomeLocked is the Welcome for a child. c.mu is held.
func (c *Controller) welcomeLocked(child string, capVersion int) *tunnel.Welcome {
	w := &tunnel.Welcome{CapabilityVersion: capVersion, Cluster: child, Parent: c.cfg.Name}
	if capVersion >= 4 {
		w.Report = c.reported[child]
	}
	for name, s := range c.levels {
		if name != child {
			w.Siblings = append(w.Siblings, s.serves)
		}
	}
	slices.Sort(w.Siblings)
	w.Alternates = slices.Clone(c.upSiblings)
	if c.upParent != "" {
		w.Alternates = append(w.Alternates, c.upParent)
	}
	return w
}

// welcomeAll sends every child its Welcome again, for changed alternates.
func (c *Controller) welcomeAll() {
	c.mu.Lock()
	type job struct {
		s *session
		w *tunnel.Welcome
	}
	var jobs []job
	for name, s := range c.children {
		if s.capVersion >= 3 {
			jobs = append(jobs, job{s, c.welcomeLocked(name, s.capVersion)})
		}
	}
	c.mu.Unlock()
	for _, j := range jobs {
		j.s.out.Send(j.w)
	}
}
