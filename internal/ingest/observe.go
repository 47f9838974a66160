package ingest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/ollama/ollama/api"

	"github.com/adapterd/adapterd/internal/blob"
	"github.com/adapterd/adapterd/internal/dropdir"
	"github.com/adapterd/adapterd/internal/lora"
	"github.com/adapterd/adapterd/internal/spec"
	"github.com/adapterd/adapterd/internal/status"
)

// observed is one look at a key: what its folder holds and what Ollama has,
// read once, as plain values. plan decides from this alone.
//
// Reading stops at the first fact that decides the outcome (a folder still
// settling needs no Ollama call), so later fields are zero when an earlier
// one already decides it.
type observed struct {
	Key       string
	Dir       string
	Settle    time.Duration
	ReadyFile string

	DropDir        string
	FolderGone     bool          // the key's folder is gone
	RemovalHeld    string        // why a gone folder may not be retired now (guard.go)
	Symlink        bool          // the key's folder is a symlink
	Snap           snapshot      // the folder's relevant files
	ReadyMissing   bool          // ready_file is configured and absent
	Quiet          time.Duration // since the newest change in the folder
	LoadErr        error         // the folder's files or sidecar are bad
	SeenIncomplete bool          // LoadErr was already incomplete on this exact snapshot
	Folder         *Folder
	Name           string   // canonical model name
	Claimants      []string // other folders that want Name

	// Read only for a valid folder that no other folder claims.
	Retire        []OwnedModel // models this key owns under names it no longer claims
	Strategy      spec.Strategy
	BaseDigest    string
	Base          *baseDetails
	Digests       map[string]string // adapter file -> sha256
	Changed       bool              // the files changed while they were read
	Input         string            // digest of every input (status digest)
	Existing      *api.ListModelResponse
	Owned         *OwnedModel
	PendingLanded bool     // Owned's pending create is the model under Name
	LateClaimants []string // claims re-read from every folder before a create
}

// status is what the user sees of o before any decision: key, model, base.
func (o *observed) status() status.Status {
	st := status.Status{Key: o.Key}
	if o.Folder != nil {
		st.Model, st.Base = o.Folder.Resolved.Model, o.Folder.Resolved.Base
	}
	st.Strategy = string(o.Strategy)
	return st
}

// observe reads key's folder, then (for a valid folder) Ollama. Claims are
// updated on the way: they are the controller's index of who wants which
// name, and a clash must be seen before either folder creates anything.
func (r *Reconciler) observe(ctx context.Context, key string) (*observed, error) {
	cfg := r.config()
	o := &observed{Key: key, DropDir: cfg.DropDir, Dir: filepath.Join(cfg.DropDir, key), Settle: cfg.Settle, ReadyFile: cfg.ReadyFile}
	// The folder is opened once, without following a link, and every
	// file of this pass is read through that handle: a folder flipped to
	// a symlink after this point is never read.
	dir, err := openKeyFolder(cfg.DropDir, key)
	if err != nil {
		if errors.Is(err, errSymlink) {
			o.Symlink = true
			r.claim(key, "")
			return o, nil
		}
		o.FolderGone = true
		if o.RemovalHeld = r.removalHold(cfg); o.RemovalHeld == "" {
			r.claim(key, "")
			o.Retire = r.unclaimedModels(key, "")
		}
		return o, nil
	}
	defer dir.Close()
	if o.Snap, err = scanFolder(dir, cfg.ReadyFile); err != nil {
		return o, fmt.Errorf("%s: cannot read folder: %w", o.Dir, err)
	}
	if cfg.ReadyFile != "" && !o.Snap.has(cfg.ReadyFile) {
		o.ReadyMissing = true
		return o, nil
	}
	if o.Quiet = time.Since(o.Snap.Newest); o.Quiet < cfg.Settle {
		return o, nil
	}
	f, err := LoadFolderAt(dir, cfg.Defaults, nil)
	if err != nil {
		o.LoadErr, o.SeenIncomplete = err, r.seenIncomplete(key, o.Snap)
		return o, nil
	}
	o.Folder = f
	res := f.Resolved
	o.Name = spec.CanonicalModelName(res.Model)
	if o.Claimants = r.claim(key, o.Name); len(o.Claimants) > 0 {
		return o, nil
	}
	o.Retire = r.unclaimedModels(key, o.Name)
	if len(o.Retire) > 0 && r.removalHold(cfg) != "" {
		o.Retire = nil
	}

	models, err := r.baseOf(ctx, f, o)
	if err != nil {
		return o, err
	}
	tied, err := r.srv.tiedOutput(ctx, res.Base, o.Base, f.Adapter)
	if err != nil {
		return o, err
	}
	if o.Strategy, _, err = r.chooseStrategy(ctx, res, o.Base.Info.Arch, f.Adapter, tied); err != nil {
		return o, err
	}
	r.waitPrepared(ctx, key)
	if o.Digests, err = r.fileDigests(f.Adapter); err != nil {
		return o, err
	}
	// Two equal scans around the reading: anything written meanwhile means
	// the folder is not settled after all.
	again, err := scanFolder(dir, cfg.ReadyFile)
	if o.Changed = err != nil || again.id() != o.Snap.id(); o.Changed {
		return o, nil
	}
	o.Input = inputDigest(res, o.Strategy, o.Digests, o.BaseDigest)
	if m, ok := r.store.Model(o.Name); ok {
		o.Owned = &m
	}
	if e, ok := models[o.Name]; ok {
		o.Existing = &e
	}
	if o.Owned != nil && o.Existing != nil {
		o.PendingLanded = r.pendingLanded(ctx, *o.Owned, o.Name, o.Existing.Digest)
	}
	if !upToDate(o) {
		// Folders not reconciled yet (just dropped, or seen only by an
		// event) may claim the same name: read them all before a create.
		o.LateClaimants = r.refreshClaims(cfg, key, o.Name)
	}
	return o, nil
}

// errSymlink: the key's name in the drop dir is a link, not a folder.
var errSymlink = errors.New("a symlink")

// openKeyFolder opens key's folder in the drop dir without following a
// link. An error that matches errSymlink means the name is a link; any
// other error means there is no folder to read (gone, or not a folder).
func openKeyFolder(drop, key string) (*os.File, error) {
	d, err := dropdir.Open(drop)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	dir, err := d.OpenFolder(key)
	if err != nil {
		if e, lerr := d.Lstat(key); lerr == nil && e.IsSymlink() {
			return nil, errSymlink
		}
		return nil, err
	}
	return dir, nil
}

// baseOf finds the folder's base model in Ollama and fills o's BaseDigest
// and Base. It returns the model list for the caller's own lookups.
func (r *Reconciler) baseOf(ctx context.Context, f *Folder, o *observed) (map[string]api.ListModelResponse, error) {
	models, err := r.srv.models(ctx)
	if err != nil {
		return nil, err
	}
	res := f.Resolved
	b, ok := models[spec.CanonicalModelName(res.Base)]
	if !ok {
		return nil, &baseMissingError{fmt.Sprintf("%s: base model %s is not in Ollama; run `ollama pull %s` or fix base:", f.SidecarFile, res.Base, res.Base)}
	}
	o.BaseDigest = b.Digest
	if o.Base, err = r.srv.base(ctx, res.Base, b.Digest); err != nil {
		return nil, err
	}
	return models, nil
}

// upToDate reports whether the model under o.Name is the one adapterd made
// from exactly these inputs, with nothing to adopt.
func upToDate(o *observed) bool {
	m, e := o.Owned, o.Existing
	return m != nil && e != nil && !needsAdopt(*m, o.Key, o.DropDir) &&
		m.InputDigest == o.Input && e.Digest == m.OllamaDigest
}

// pendingLanded reports whether a create adapterd started (and may not
// have seen finish: a crash, SIGTERM) is the model now under name.
func (r *Reconciler) pendingLanded(ctx context.Context, m OwnedModel, name, digest string) bool {
	switch {
	case m.PendingDigest != "":
		return digest == m.PendingDigest
	case m.PendingLayer != "":
		ok, err := r.srv.hasLayer(ctx, name, m.PendingLayer)
		return err == nil && ok
	}
	return false
}

// seenIncomplete reports whether this exact snapshot was already seen
// incomplete, and remembers it. A copy in progress changes the snapshot, so
// it keeps waiting; a file that stays truncated across two equal scans is
// invalid.
func (r *Reconciler) seenIncomplete(key string, snap snapshot) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	id := snap.id()
	if r.incomplete[key] == id {
		return true
	}
	r.incomplete[key] = id
	return false
}

// fileDigests returns "sha256:..." for each of a's files, from the stamp
// cache when size, mtime and inode are unchanged. Files are opened through
// a.Open, so the bytes hashed are those of the files Detect checked.
func (r *Reconciler) fileDigests(a *lora.Adapter) (map[string]string, error) {
	out := map[string]string{}
	for _, p := range a.Files {
		d, err := r.fileDigest(a, p)
		if err != nil {
			return nil, err
		}
		out[p] = d
	}
	return out, nil
}

func (r *Reconciler) fileDigest(a *lora.Adapter, p string) (string, error) {
	fh, _, err := a.Open(p)
	if err != nil {
		return "", err
	}
	defer fh.Close()
	fi, err := fh.Stat()
	if err != nil {
		return "", err
	}
	s := stampOf(fi)
	if c, ok := r.store.Stamp(p); ok && c.Size == s.Size && c.MtimeNs == s.MtimeNs && c.Inode == s.Inode {
		return c.Digest, nil
	}
	// Weights are checked for NaN and Inf in the same pass as the hash.
	chk, err := a.NewFiniteChecker(p, fh, fi.Size())
	if err != nil {
		return "", err
	}
	d, err := blob.Digest(blob.Watch(io.TeeReader(fh, chk), fi.Size(), r.report("", "hash "+filepath.Base(p))))
	if err != nil {
		return "", err
	}
	if err := chk.Err(); err != nil {
		return "", err // not cached: the file is checked again until it changes
	}
	r.metrics.BytesHashed(s.Size)
	s.Digest = d
	if err := r.store.Update(func(st *stateFile) bool { st.Files[p] = s; return true }); err != nil {
		return "", err
	}
	return d, nil
}

// inputDigest covers every input of a model: the resolved sidecar, the
// strategy, the adapter files and the base model's digest.
func inputDigest(res *spec.Resolved, strategy spec.Strategy, files map[string]string, baseDigest string) string {
	names := make([]string, 0, len(files))
	for p := range files {
		names = append(names, p)
	}
	sort.Strings(names)
	fileList := make([][2]string, 0, len(names))
	for _, p := range names {
		fileList = append(fileList, [2]string{filepath.Base(p), files[p]})
	}
	b, _ := json.Marshal(struct {
		V        int
		Resolved *spec.Resolved
		Strategy spec.Strategy
		Files    [][2]string
		Base     string
	}{2, res, strategy, fileList, baseDigest})
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}
