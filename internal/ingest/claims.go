package ingest

import (
	"fmt"
	"path/filepath"
	"sort"
	"sync"

	"github.com/adapterd/adapterd/internal/dropdir"
	"github.com/adapterd/adapterd/internal/layout"
	"github.com/adapterd/adapterd/internal/spec"
)

// claimIndex is the index of which folder wants which model name. It is
// kept in memory and refreshed as folders are read, so a clash of two
// folders is seen before either creates anything.
type claimIndex struct {
	mu sync.Mutex
	// byKey: key -> the canonical model name its folder asks for; a key
	// whose folder is gone, a symlink or unreadable has no entry.
	byKey map[string]string
	// peeked caches each folder's sidecar name by the sidecar's path,
	// size and mtime (see peekModelName); cleared when the defaults
	// change.
	peeked map[string]peekedName
}

func newClaimIndex() *claimIndex {
	return &claimIndex{byKey: map[string]string{}, peeked: map[string]peekedName{}}
}

// set records that key wants name; "" drops its claim.
func (c *claimIndex) set(key, name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if name == "" {
		delete(c.byKey, key)
	} else {
		c.byKey[key] = name
	}
}

// resetPeeked forgets the cached sidecar names: they may derive from old
// defaults.
func (c *claimIndex) resetPeeked() {
	c.mu.Lock()
	c.peeked = map[string]peekedName{}
	c.mu.Unlock()
}

// claim records that key wants model name (canonical) and returns the other
// keys that want it too. Keys that shared the key's previous name are queued
// again: their conflict may be over.
func (r *Reconciler) claim(key, name string) []string {
	c := r.claims
	c.mu.Lock()
	prev, had := c.byKey[key]
	if name == "" {
		delete(c.byKey, key)
	} else {
		c.byKey[key] = name
	}
	var others, freed []string
	for k, n := range c.byKey {
		if k == key {
			continue
		}
		if name != "" && n == name {
			others = append(others, k)
		}
		if had && prev != name && n == prev {
			freed = append(freed, k)
		}
	}
	c.mu.Unlock()
	for _, k := range freed {
		r.ctl.Add(k)
	}
	sort.Strings(others)
	return others
}

// refreshClaims re-reads every other folder's model name and returns the
// keys that claim name besides key.
func (r *Reconciler) refreshClaims(cfg *spec.Config, key, name string) []string {
	entries, err := dropdir.ListPath(cfg.DropDir)
	if err != nil {
		return nil
	}
	var others []string
	for _, e := range entries {
		k := e.Name
		if k == key || !layout.IsAdapterKey(k) {
			continue
		}
		n, ok := r.peekModelName(cfg, k)
		if !ok {
			continue
		}
		r.claims.set(k, n)
		if n == name {
			others = append(others, k)
		}
	}
	sort.Strings(others)
	return others
}

// claimedBy returns the keys claiming a canonical model name.
func (c *claimIndex) claimedBy(name string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var keys []string
	for k, n := range c.byKey {
		if n == name {
			keys = append(keys, k)
		}
	}
	return keys
}

// peekModelName reads a folder's sidecar for its model name, ignoring every
// error: it only seeds claims, and the reconcile reports problems. Names are
// cached by the sidecar's size and mtime: claims are re-read for every
// folder before each create, and re-parsing a thousand sidecars each time
// would make creating n folders cost n².
func (r *Reconciler) peekModelName(cfg *spec.Config, key string) (string, bool) {
	dir := filepath.Join(cfg.DropDir, key)
	var sc *spec.Sidecar
	file := filepath.Join(dir, layout.SidecarYAML)
	h, err := openKeyFolder(cfg.DropDir, key)
	if err != nil {
		return "", false
	}
	defer h.Close()
	for _, name := range layout.Sidecars {
		p := filepath.Join(dir, name)
		fi, err := dropdir.StatAt(h, name)
		if err != nil || !fi.IsRegular() || fi.Size > spec.MaxFileSize {
			continue
		}
		stamp := fmt.Sprintf("%s|%d|%d|%d", p, fi.Size, fi.MtimeNs, fi.Ino)
		r.claims.mu.Lock()
		c, ok := r.claims.peeked[key]
		r.claims.mu.Unlock()
		if ok && c.stamp == stamp {
			return c.name, c.name != ""
		}
		sc, err = spec.ReadSidecarAt(h, name)
		if err != nil {
			sc = nil
		}
		file = p
		name := ""
		if sc != nil {
			if res, err := spec.Resolve(key, cfg.Defaults, sc, file); err == nil {
				name = spec.CanonicalModelName(res.Model)
			}
		}
		r.claims.mu.Lock()
		r.claims.peeked[key] = peekedName{stamp: stamp, name: name}
		r.claims.mu.Unlock()
		return name, name != ""
	}
	res, err := spec.Resolve(key, cfg.Defaults, nil, file)
	if err != nil {
		return "", false
	}
	return spec.CanonicalModelName(res.Model), true
}

type peekedName struct{ stamp, name string }
