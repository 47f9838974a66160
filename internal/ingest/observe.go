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
	Key string
	where
	folderRead
	RemovalHeld string       // why a gone folder may not be retired now (guard.go)
	Name        string       // canonical model name
	Claimants   []string     // other folders that want Name
	Retire      []OwnedModel // models this key owns under names it no longer claims

	// Read only for a valid folder that no other folder claims.
	Server serverFacts
	Files  folderFacts
	modelFacts
	LateClaimants []string // claims re-read from every folder before a create
}

// where is the part of the config an observation was made under.
type where struct {
	Dir, DropDir, ReadyFile string
	Settle                  time.Duration
}

// folderRead is what readFolder saw of a key's folder.
type folderRead struct {
	FolderGone     bool          // the key's folder is gone
	Symlink        bool          // the key's folder is a symlink
	Snap           snapshot      // the folder's relevant files
	ReadyMissing   bool          // ready_file is configured and absent
	Quiet          time.Duration // since the newest change in the folder
	LoadErr        error         // the folder's files or sidecar are bad
	SeenIncomplete bool          // LoadErr was already incomplete on this exact snapshot
	Folder         *Folder
	Changed        bool // the files changed while they were read
	// dir is the pass's one handle on the folder: both scans and every
	// file read go through it. observe closes it before it returns.
	dir *os.File
}

// modelFacts is the model under the folder's name and adapterd's record of it.
type modelFacts struct {
	Existing      *api.ListModelResponse
	Owned         *OwnedModel
	PendingLanded bool    // Owned's pending create is the model under Name
	Rollout       Rollout // the key's rejected input and pin (rollout.go)
}

// status is what the user sees of o before any decision: key, model, base.
func (o *observed) status() status.Status {
	st := status.Status{Key: o.Key}
	if o.Folder != nil {
		st.Model, st.Base = o.Folder.Resolved.Model, o.Folder.Resolved.Base
	}
	return st
}

// observe reads key's folder, then (for a valid folder) Ollama. Claims are
// updated on the way: they are the controller's index of who wants which
// name, and a clash must be seen before either folder creates anything.
func (r *Reconciler) observe(ctx context.Context, key string) (*observed, error) {
	cfg := r.config()
	o := &observed{Key: key, where: where{DropDir: cfg.DropDir, Dir: filepath.Join(cfg.DropDir, key), Settle: cfg.Settle, ReadyFile: cfg.ReadyFile}}
	var err error
	o.folderRead, err = r.readFolder(cfg, key, o.Dir)
	if o.dir != nil {
		defer o.dir.Close()
	}
	if err != nil {
		return o, err
	}
	switch {
	case o.Symlink:
		r.claim(key, "")
		return o, nil
	case o.FolderGone:
		if o.RemovalHeld = r.guard.removalHold(cfg); o.RemovalHeld == "" {
			r.claim(key, "")
			o.Retire = r.unclaimedModels(key, "")
		}
		return o, nil
	case o.Folder == nil:
		return o, nil
	}
	f := o.Folder
	o.Name = spec.CanonicalModelName(f.Resolved.Model)
	if o.Claimants = r.claim(key, o.Name); len(o.Claimants) > 0 {
		return o, nil
	}
	o.Retire = r.unclaimedModels(key, o.Name)
	if len(o.Retire) > 0 && r.guard.removalHold(cfg) != "" {
		o.Retire = nil
	}
	var models map[string]api.ListModelResponse
	if o.Server, models, err = r.srv.readServer(ctx, f, cfg.Ollama.ModelsDir); err != nil {
		return o, err
	}
	r.prep.wait(ctx, key)
	o.Files = folderFacts{Folder: f}
	if o.Files.Digests, o.Files.WeightsErr, err = r.fileDigests(f.Adapter); err != nil {
		return o, err
	}
	// Two equal scans around the reading: anything written meanwhile means
	// the folder is not settled after all.
	again, err := scanFolder(o.dir, cfg.ReadyFile)
	if o.Changed = err != nil || again.id() != o.Snap.id(); o.Changed {
		return o, nil
	}
	if m, ok := r.store.Model(o.Name); ok {
		o.Owned = &m
	}
	if e, ok := models[o.Name]; ok {
		o.Existing = &e
	}
	o.Rollout = r.store.rollout(key)
	if o.Owned != nil && o.Existing != nil {
		o.PendingLanded = r.pendingLanded(ctx, *o.Owned, o.Name, o.Existing.Digest)
	}
	if o.Owned == nil || o.Existing == nil || o.Owned.Key != key || !o.Owned.Owns(o.Existing.Digest) {
		// Folders not reconciled yet (just dropped, or seen only by an
		// event) may claim the same name: read them all before a create.
		// A model this key already owns is left out: a folder that claims
		// it later meets the conflict in its own reconcile and requeues
		// this key.
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

// readFolder is the one read of a key's folder: is it there, is it a
// folder, which relevant files does it hold, has it settled, and what do its
// files and sidecar say.
func (r *Reconciler) readFolder(cfg *spec.Config, key, dir string) (folderRead, error) {
	var fr folderRead
	// The folder is opened once, without following a link, and every
	// file of this pass is read through that handle: a folder flipped to
	// a symlink after this point is never read.
	h, err := openKeyFolder(cfg.DropDir, key)
	if err != nil {
		fr.Symlink = errors.Is(err, errSymlink)
		fr.FolderGone = !fr.Symlink
		return fr, nil
	}
	fr.dir = h
	if fr.Snap, err = scanFolder(h, cfg.ReadyFile); err != nil {
		return fr, fmt.Errorf("%s: cannot read folder: %w", dir, err)
	}
	if cfg.ReadyFile != "" && !fr.Snap.has(cfg.ReadyFile) {
		fr.ReadyMissing = true
		return fr, nil
	}
	if fr.Quiet = time.Since(fr.Snap.Newest); fr.Quiet < cfg.Settle {
		return fr, nil
	}
	if fr.Folder, err = LoadFolderAt(h, cfg.Defaults, nil); err != nil {
		fr.Folder, fr.LoadErr, fr.SeenIncomplete = nil, err, r.board.seenIncomplete(key, fr.Snap)
	}
	return fr, nil
}

// upToDate reports whether the model under o.Name is the one adapterd made
// from exactly these inputs, with nothing to adopt.
func upToDate(o *observed, input string) bool {
	m, e := o.Owned, o.Existing
	return m != nil && e != nil && !needsAdopt(*m, o.Key, o.DropDir) &&
		m.InputDigest == input && e.Digest == m.OllamaDigest
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

// seenIncomplete reports whether this exact snapshot of key was already
// seen incomplete, and remembers it. A copy in progress changes the
// snapshot, so it keeps waiting; a file that stays truncated across two
// equal scans is invalid.
func (b *statusBoard) seenIncomplete(key string, snap snapshot) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	id := snap.id()
	if b.incomplete[key] == id {
		return true
	}
	b.incomplete[key] = id
	return false
}

// fileDigests returns "sha256:..." for each of a's files, from the stamp
// cache when size, mtime and inode are unchanged. Files are opened through
// a.Open, so the bytes hashed are those of the files Detect checked. Weights
// are scanned for NaN and Inf in the same pass: the first found is
// weightsErr, a fact about the folder, where err is a failure to read it.
func (r *Reconciler) fileDigests(a *lora.Adapter) (digests map[string]string, weightsErr, err error) {
	out := map[string]string{}
	for _, p := range a.Files {
		d, werr, err := r.fileDigest(a, p)
		if err != nil {
			return nil, nil, err
		}
		if werr != nil {
			return nil, werr, nil
		}
		out[p] = d
	}
	return out, nil, nil
}

func (r *Reconciler) fileDigest(a *lora.Adapter, p string) (string, error, error) {
	fh, _, err := a.Open(p)
	if err != nil {
		return "", nil, err
	}
	defer fh.Close()
	fi, err := fh.Stat()
	if err != nil {
		return "", nil, err
	}
	s := stampOf(fi)
	if c, ok := r.store.Stamp(p); ok && c.Size == s.Size && c.MtimeNs == s.MtimeNs && c.Inode == s.Inode {
		return c.Digest, nil, nil
	}
	chk, err := a.NewFiniteChecker(p, fh, fi.Size())
	if err != nil {
		return "", nil, err
	}
	d, err := blob.Digest(blob.Watch(io.TeeReader(fh, chk), fi.Size(), r.report("", "hash "+filepath.Base(p))))
	if err != nil {
		return "", nil, err
	}
	if err := chk.Err(); err != nil {
		return "", err, nil // not cached: the file is checked again until it changes
	}
	r.metrics.BytesHashed(s.Size)
	s.Digest = d
	if err := r.store.Update(func(st *stateFile) bool { st.Files[p] = s; return true }); err != nil {
		return "", nil, err
	}
	return d, nil, nil
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
