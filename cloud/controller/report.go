package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/ote-edge/ote/cloud/enrollment"
	"github.com/ote-edge/ote/cloud/tunnel"
)

// Report is what this level tells its parent about its subtree: every
// cluster it knows below it, the state of the deployments it got from the
// parent on each of their targets, and its revocations. It comes with a
// channel closed at the next change.
func (c *Controller) Report() (*tunnel.Status, <-chan struct{}) {
	c.mu.Lock()
	changed := c.reportCh
	c.mu.Unlock()
	st := &tunnel.Status{Revoked: c.revokedCopy()}
	c.registry.each(func(name string, e *ecEntry) {
		if e.phase == "Revoked" {
			return
		}
		cs := tunnel.ClusterStatus{
			Name: name, Tags: e.labels, Parent: e.parent, Phase: e.phase,
			LastSeen: e.lastSeen, AgentVersion: e.agentVersion, CertNotAfter: e.notAfter,
		}
		if cs.Parent == "" {
			cs.Parent = c.cfg.Name
		}
		if cs.Phase == "" {
			cs.Phase = "Pending"
		}
		st.Clusters = append(st.Clusters, cs)
	})
	c.mu.Lock()
	for i := range st.Clusters {
		cs := &st.Clusters[i]
		if s := c.children[cs.Name]; s != nil {
			cs.CertNotBefore = s.cert.NotBefore
		} else if _, cl, ok := c.ownerLocked(cs.Name); ok {
			cs.CertNotBefore = cl.st.CertNotBefore
		}
	}
	c.mu.Unlock()
	slices.SortFunc(st.Clusters, func(a, b tunnel.ClusterStatus) int { return strings.Compare(a.Name, b.Name) })
	st.Deployments = c.sync.inheritedStates(c.cfg.Name)
	return st, changed
}

// Revocations are kept in a ConfigMap of this level, so that they outlive
// the EdgeClusters whose deletion made them.
const revokedConfigMap = "ote-revoked"

func (c *Controller) loadRevoked(ctx context.Context) error {
	data, err := c.cfg.Tokens.ConfigMapData(ctx, revokedConfigMap)
	if err != nil {
		return err
	}
	m := map[string]time.Time{}
	if raw := data["revoked"]; raw != "" {
		if err := json.Unmarshal([]byte(raw), &m); err != nil {
			return fmt.Errorf("%s/%s: %w", enrollment.Namespace, revokedConfigMap, err)
		}
	}
	c.mu.Lock()
	for n, at := range m {
		if old, ok := c.revoked[n]; !ok || at.After(old) {
			c.revoked[n] = at
		}
	}
	c.mu.Unlock()
	return nil
}

func (c *Controller) saveRevoked(ctx context.Context) error {
	b, err := json.Marshal(c.revokedCopy())
	if err != nil {
		return err
	}
	return c.cfg.Tokens.ApplyConfigMap(ctx, revokedConfigMap, "ote-controller", map[string]string{"revoked": string(b)})
}
