package hub

import (
	"context"
	"fmt"
	"os"
	"path"
	"regexp"
	"sort"
	"strings"

	"github.com/adapterd/adapterd/internal/layout"
	"github.com/adapterd/adapterd/internal/safefile"
)

// Request names an adapter on the hub.
type Request struct {
	Repo      string // org/name
	Revision  string // branch, tag or commit; default main
	Subfolder string // folder inside the repo holding the adapter
	File      string // which *.gguf, when the folder has several
}

// Source is what was fetched, recorded next to the files (layout.SourceFile)
// so a model can be traced to exact bytes.
type Source struct {
	Endpoint  string   `json:"endpoint"`
	Repo      string   `json:"repo"`
	Revision  string   `json:"revision"`
	Commit    string   `json:"commit"`
	Subfolder string   `json:"subfolder,omitempty"`
	Files     []string `json:"files"`
}

var repoRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$`)

// Check refuses a request that could not name a repo or that would make a
// path escape the repo.
func (r Request) Check() error {
	if !repoRE.MatchString(r.Repo) || strings.Contains(r.Repo, "..") {
		return fmt.Errorf("hub repo %q is not a repo name; write it as org/name", r.Repo)
	}
	if r.Subfolder != "" {
		clean := path.Clean(r.Subfolder)
		if path.IsAbs(r.Subfolder) || clean == ".." || strings.HasPrefix(clean, "../") {
			return fmt.Errorf("subfolder %q leaves the repo; give a folder inside it, like checkpoint-500", r.Subfolder)
		}
	}
	if r.File != "" && (strings.Contains(r.File, "/") || r.File == "." || r.File == "..") {
		return fmt.Errorf("--file %q must be a file name inside the adapter folder; give the folder as the subfolder", r.File)
	}
	return nil
}

// weightsRE matches the files of full model weights: what a fetch of an
// adapter must never download.
var weightsRE = regexp.MustCompile(`^(model|pytorch_model|tf_model|flax_model|consolidated)([-.].*)?\.(safetensors|bin|h5|msgpack|pth|pt)$|\.safetensors\.index\.json$`)

// Select picks the adapter's files from the names at the top of the
// adapter folder: the PEFT pair, or one GGUF LoRA (file chooses among
// several), and the sidecar when there is one. Nothing else is picked, so
// full model weights next to an adapter are never downloaded.
func Select(names []string, file string, where string) ([]string, error) {
	has := map[string]bool{}
	var ggufs []string
	for _, n := range names {
		has[n] = true
		if layout.IsGGUF(n) {
			ggufs = append(ggufs, n)
		}
	}
	sort.Strings(ggufs)
	var picked []string
	switch {
	case file != "":
		if !has[file] {
			return nil, fmt.Errorf("%s has no file %q (files: %s); check --file", where, file, list(names))
		}
		if !layout.IsGGUF(file) {
			return nil, fmt.Errorf("--file %q is not a *.gguf; --file picks one GGUF LoRA (in %s: %s)", file, where, list(ggufs))
		}
		picked = []string{file}
	case has[layout.PEFTConfig] && has[layout.PEFTWeights]:
		picked = []string{layout.PEFTConfig, layout.PEFTWeights}
	case has[layout.PEFTConfig] && has[layout.PEFTPickle]:
		return nil, fmt.Errorf("%s has %s but no %s; only safetensors adapters are supported: save with safe_serialization=True", where, layout.PEFTPickle, layout.PEFTWeights)
	case len(ggufs) == 1:
		picked = ggufs
	case len(ggufs) > 1:
		return nil, fmt.Errorf("%s has %d GGUF files; pick one with --file (one of: %s)", where, len(ggufs), strings.Join(ggufs, ", "))
	default:
		var weights []string
		for _, n := range names {
			if weightsRE.MatchString(n) {
				weights = append(weights, n)
			}
		}
		if len(weights) > 0 {
			sort.Strings(weights)
			return nil, fmt.Errorf("%s holds full model weights (%s), not a LoRA adapter; nothing was downloaded: give the adapter's repo, or the subfolder where its %s is", where, list(weights), layout.PEFTConfig)
		}
		return nil, fmt.Errorf("%s has no adapter (%s and %s, or one *.gguf LoRA; files: %s); check the repo, the revision and the subfolder", where, layout.PEFTConfig, layout.PEFTWeights, list(names))
	}
	for _, s := range layout.Sidecars {
		if has[s] {
			picked = append(picked, s)
			break
		}
	}
	return picked, nil
}

// list shows up to 8 names.
func list(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	s := append([]string(nil), names...)
	sort.Strings(s)
	if len(s) > 8 {
		return strings.Join(s[:8], ", ") + fmt.Sprintf(" and %d more", len(s)-8)
	}
	return strings.Join(s, ", ")
}

// Fetch downloads the adapter r names into dir (which must exist and be
// empty of those names) and returns what it fetched. Each file is checked
// against the hub's size and hash before it is kept; on an error, files
// already fetched stay in dir and the caller discards dir.
func (c *Client) Fetch(ctx context.Context, r Request, dir string) (*Source, error) {
	d, err := safefile.OpenDir(dir)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return c.fetch(ctx, r, d, nil)
}

// fetch writes every file through dir's handle, never by path, so a
// folder renamed or swapped for a link meanwhile is not written through.
func (c *Client) fetch(ctx context.Context, r Request, dir *os.File, reuse Reuse) (*Source, error) {
	if err := r.Check(); err != nil {
		return nil, err
	}
	rev := r.Revision
	if rev == "" {
		rev = "main"
	}
	sub := strings.Trim(path.Clean("/"+r.Subfolder), "/")
	if c.Offline {
		return c.fetchOffline(r, rev, sub, dir)
	}
	commit, err := c.ResolveRevision(ctx, r.Repo, rev)
	if err != nil {
		return nil, err
	}
	// Only the names an adapter folder can use are kept while paging (and
	// full weights' names, for the message that refuses them), so a
	// folder of a million files costs no more memory than one of three.
	var names []string
	_, _, err = c.ListFiles(ctx, r.Repo, commit, sub, false, func(e Entry) bool {
		if e.Type != "file" {
			return false
		}
		rel := e.Path
		if sub != "" {
			rel = strings.TrimPrefix(e.Path, sub+"/")
		}
		if !layout.ValidName(rel) {
			return false // in a subfolder, or a name no drop-dir reader takes
		}
		if layout.IsRelevantFile(rel, "") || rel == layout.PEFTPickle || weightsRE.MatchString(rel) {
			names = append(names, rel)
		}
		return false
	})
	if err != nil {
		return nil, err
	}
	where := "hub repo " + r.Repo + " at " + rev
	if sub != "" {
		where += " folder " + sub
	}
	picked, err := Select(names, r.File, where)
	if err != nil {
		return nil, err
	}
	src := &Source{Endpoint: c.Endpoint, Repo: r.Repo, Revision: rev, Commit: commit, Subfolder: sub, Files: picked}
	for _, name := range picked {
		p := name
		if sub != "" {
			p = sub + "/" + name
		}
		info, err := c.Stat(ctx, r.Repo, commit, p)
		if err != nil {
			return nil, err
		}
		if max := c.maxFileSize(); info.Size > max {
			return nil, fmt.Errorf("hub repo %s file %s is %d bytes, more than max_file_size (%d): not an adapter, or raise transfers.max_file_size (--max-file-size); nothing was downloaded", r.Repo, p, info.Size, max)
		}
		if info.Commit != "" && info.Commit != commit {
			return nil, fmt.Errorf("hub repo %s file %s: the hub served commit %s, not %s; try again", r.Repo, p, info.Commit, commit)
		}
		if layout.IsGGUF(name) {
			kind, complete, err := c.ggufKind(ctx, r.Repo, commit, p, info)
			if err != nil {
				return nil, err
			}
			if kind != "adapter" && (kind != "" || complete) {
				shown := "not set"
				if kind != "" {
					shown = fmt.Sprintf("%q", kind)
				}
				return nil, fmt.Errorf("hub repo %s file %s is a full model, not a LoRA adapter (general.type is %s); nothing was downloaded: pick the adapter's *.gguf with --file", r.Repo, p, shown)
			}
		}
		if reuse != nil && reuse(name, info) {
			continue
		}
		if c.fromCache(r.Repo, commit, p, info, dir, name) {
			continue
		}
		if err := c.Download(ctx, r.Repo, commit, p, info, dir, name); err != nil {
			return nil, err
		}
	}
	// Only now that the snapshot holds every file does the revision's name
	// lead to it, so an offline fetch by that name finds them all.
	c.recordRef(r.Repo, rev, commit)
	return src, nil
}

// maxFileSize is MaxFileSize, or its default when unset.
func (c *Client) maxFileSize() int64 {
	if c.MaxFileSize > 0 {
		return c.MaxFileSize
	}
	return DefaultMaxFileSize
}
