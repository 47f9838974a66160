package mirror

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/adapterd/adapterd/internal/hub"
	"github.com/adapterd/adapterd/internal/layout"
	"github.com/adapterd/adapterd/internal/safefile"
	"github.com/adapterd/adapterd/internal/spec"
)

// hubKind: one repo is one folder. A commit is atomic, so it is mirrored
// at first sight. The hub says when a repo is deleted (RepoNotFound), so no
// empty-answer hold is needed, but one such answer could still be a hub
// having a bad minute: the folder goes only when two polls in a row say
// so.
var hubKind = kind{label: "hub source", tag: "hub", policy: policy{holdEmpty: false, goneAfter: 2}}

// checkTimeout bounds one revision check.
const checkTimeout = time.Minute

// hubRemote resolves a hub revision each poll and fetches the adapter's
// files when the commit changes.
type hubRemote struct {
	h      *spec.HubSource
	label  string
	client *hub.Client
	// sidecar is what the entry's sidecar: becomes as adapter.yaml; nil
	// without one.
	sidecar []byte
	// got is each file's bytes downloaded by the fetch under way, as the
	// client's progress reports them: files copied from the folder in
	// place or from the Hugging Face cache are not downloads.
	got map[string]int64
}

// newHub makes the client the way fetch-adapter does (HF_ENDPOINT, HF_TOKEN
// and the token file), with the cache in state_dir unless HF_HUB_CACHE says
// otherwise: the hardened unit hides home directories.
func newHub(o Options) (*hubRemote, string, error) {
	client, err := hub.NewFromEnv(o.Getenv)
	if err != nil {
		return nil, "", err
	}
	client.CacheDir = o.Getenv("HF_HUB_CACHE")
	if client.CacheDir == "" && o.StateDir != "" {
		client.CacheDir = filepath.Join(o.StateDir, "hub")
	}
	// HF_HUB_OFFLINE is for one-shot commands; a source exists to poll.
	client.Offline = false
	// A cache that cannot be written is skipped, and the log says so.
	client.Logger = o.Logger
	// A hub that accepts the connection and never answers, or trickles,
	// is an outage like any other, not a poll that hangs for good.
	client.SetIdleTimeout(o.Transfers.IdleTimeout, "transfers.idle_timeout")
	client.MaxFileSize = int64(o.Transfers.MaxFileSize)
	r := &hubRemote{h: o.Source.Hub, label: hubKind.label + " " + o.Source.Name(), client: client, got: map[string]int64{}}
	client.Progress = func(path string, done, _ int64) { r.got[path] = done }
	if o.Source.Hub.Sidecar != nil {
		if r.sidecar, err = yaml.Marshal(o.Source.Hub.Sidecar); err != nil {
			return nil, "", err
		}
	}
	return r, client.Endpoint, nil
}

// access fingerprints the endpoint and the token (never stored as such).
func (r *hubRemote) access() string {
	sum := sha256.Sum256([]byte(r.client.Endpoint + "\x00" + r.client.Token))
	return hex.EncodeToString(sum[:8])
}

// check resolves the revision: one small request. The version is the
// commit and everything in the entry that shapes the folder, so a new
// subfolder or sidecar is mirrored again even at the same commit.
func (r *hubRemote) check(ctx context.Context) (map[string]offer, error) {
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	commit, err := r.client.ResolveRevision(ctx, r.h.Repo, r.h.Revision)
	if err != nil {
		var se *hub.StatusError
		if errors.As(err, &se) && (se.Code == "RepoNotFound" || se.Code == "" && se.Status == http.StatusNotFound) {
			return nil, &goneError{err}
		}
		return nil, fmt.Errorf("%s: %s; nothing is removed", r.label, oneLine(err))
	}
	h := sha256.New()
	for _, s := range []string{commit, r.h.Revision, r.h.Subfolder, string(r.sidecar)} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	v := "hub:" + commit + ":" + hex.EncodeToString(h.Sum(nil)[:8])
	return map[string]offer{r.h.Key: {Version: v, Ready: readyNow, Commit: commit}}, nil
}

// fetch downloads the adapter's files at the commit check saw (never full
// weights: hub.Select), copying those whose hash is unchanged, then writes
// the sidecar when the repo has none and the source record fetch-adapter
// writes.
func (r *hubRemote) fetch(ctx context.Context, key string, f offer, dir *os.File, reuse func(string, object) bool) (map[string]object, int64, error) {
	files := map[string]object{}
	clear(r.got)
	req := hub.Request{Repo: r.h.Repo, Revision: f.Commit, Subfolder: r.h.Subfolder}
	src, err := r.client.FetchReusing(ctx, req, dir, func(name string, info hub.FileInfo) bool {
		files[name] = object{Size: info.Size, ETag: info.ETag}
		return reuse(name, files[name])
	})
	var downloaded int64
	for _, n := range r.got {
		downloaded += n
	}
	if err != nil {
		return nil, downloaded, err
	}
	src.Revision = r.h.Revision
	if r.sidecar != nil && !slices.ContainsFunc(src.Files, func(n string) bool { return slices.Contains(layout.Sidecars, n) }) {
		if err := safefile.WriteAtomicData(dir, layout.SidecarYAML, r.sidecar, 0o644); err != nil {
			return nil, downloaded, err
		}
	}
	b, err := json.MarshalIndent(src, "", "  ")
	if err != nil {
		return nil, downloaded, err
	}
	if err := safefile.WriteAtomicData(dir, layout.SourceFile, append(b, '\n'), 0o644); err != nil {
		return nil, downloaded, err
	}
	return files, downloaded, nil
}
