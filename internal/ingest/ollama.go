package ingest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ollama/ollama/api"

	"github.com/adapterd/adapterd/internal/spec"
)

// server wraps the Ollama client with what the reconciler needs to ask often
// and cheaply: a short-lived cache of the model list (one list serves a whole
// resync of a thousand folders) and the server's capabilities.
type server struct {
	c *api.Client
	// mutate serializes adapterd's creates, copies and deletes. Ollama
	// prunes a deleted model's layers that no manifest on disk references,
	// and a create in flight has no manifest yet: a delete running beside
	// it can remove layers the create is about to use. Listing takes it for
	// reading: Ollama fails a list that meets a manifest deleted mid-scan.
	mutate sync.RWMutex
	// temps are the temporary models of adapterd's creates running now.
	temps tempModels

	mu        sync.Mutex
	list      map[string]api.ListModelResponse // by canonical name
	listAt    time.Time
	version   string
	adapters  bool // the server can create adapter models
	healthy   bool
	bases     map[string]*baseDetails // by base digest
	modelsDir string                  // Ollama's model store, when readable here
}

const listTTL = 2 * time.Second

func newServer(c *api.Client) *server { return &server{c: c} }

// models returns the model list, cached for listTTL. adapterd's own
// changes are patched into the cache (see patch), so the TTL only bounds how
// late a change made by someone else is seen.
func (s *server) models(ctx context.Context) (map[string]api.ListModelResponse, error) {
	s.mu.Lock()
	if s.list != nil && time.Since(s.listAt) < listTTL {
		l := s.list
		s.mu.Unlock()
		return l, nil
	}
	s.mu.Unlock()
	s.mutate.RLock()
	defer s.mutate.RUnlock()
	return s.listLocked(ctx)
}

// listLocked lists models; the caller holds mutate (for reading or writing).
func (s *server) listLocked(ctx context.Context) (map[string]api.ListModelResponse, error) {
	resp, err := s.c.List(ctx)
	s.setHealthy(err == nil)
	if err != nil {
		return nil, ollamaErr("list", fmt.Errorf("listing Ollama models: %w", err))
	}
	l := make(map[string]api.ListModelResponse, len(resp.Models))
	for _, m := range resp.Models {
		l[spec.CanonicalModelName(m.Name)] = m
	}
	s.mu.Lock()
	s.list, s.listAt = l, time.Now()
	s.mu.Unlock()
	return l, nil
}

// patch records in the cached list a change adapterd just made: m under
// name, or no model when m is nil. The map is copied, never changed in
// place, since readers hold on to it.
func (s *server) patch(name string, m *api.ListModelResponse) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.list == nil {
		return
	}
	l := make(map[string]api.ListModelResponse, len(s.list)+1)
	for k, v := range s.list {
		l[k] = v
	}
	if m == nil {
		delete(l, name)
	} else {
		l[name] = *m
	}
	s.list = l
}

// forget records that adapterd deleted name.
func (s *server) forget(name string) { s.patch(name, nil) }

// delete deletes a model under the mutation lock.
func (s *server) delete(ctx context.Context, name string) error {
	s.mutate.Lock()
	defer s.mutate.Unlock()
	return ollamaErr("delete", s.c.Delete(ctx, &api.DeleteRequest{Model: name}))
}

// current returns the model under name as Ollama has it now, not as
// cached: from its manifest file when Ollama's store is readable here (no
// request at all), else from a fresh list. The caller holds mutate.
func (s *server) current(ctx context.Context, name string) (*api.ListModelResponse, error) {
	if dir := s.store(); dir != "" {
		if m, err := readManifest(dir, name); err == nil {
			if m == nil {
				return nil, nil
			}
			return &api.ListModelResponse{Name: name, Model: name, Digest: m.Digest, ModifiedAt: m.Modified}, nil
		}
	}
	l, err := s.listLocked(ctx)
	if err != nil {
		return nil, err
	}
	if m, ok := l[name]; ok {
		return &m, nil
	}
	return nil, nil
}

// hasLayer reports whether the model under name has the layer digest: how
// a create that adapterd did not see finish is recognised as its own.
func (s *server) hasLayer(ctx context.Context, name, digest string) (bool, error) {
	if dir := s.store(); dir != "" {
		if m, err := readManifest(dir, name); err == nil {
			return m != nil && m.has(digest), nil
		}
	}
	show, err := s.c.Show(ctx, &api.ShowRequest{Model: name})
	if err != nil {
		return false, ollamaErr("show", err)
	}
	return strings.Contains(show.Modelfile, strings.Replace(digest, ":", "-", 1)), nil
}

// store returns Ollama's model store when this host can read it.
func (s *server) store() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.modelsDir
}

// setStore records Ollama's model store, once seen to be readable.
func (s *server) setStore(dir string) {
	if dir == "" {
		return
	}
	if _, err := os.Stat(filepath.Join(dir, "manifests")); err != nil {
		return
	}
	s.mu.Lock()
	s.modelsDir = dir
	s.mu.Unlock()
}

func (s *server) setHealthy(ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !ok && s.healthy {
		// A reconnect may reach another server: detect capabilities again.
		s.version = ""
	}
	s.healthy = ok
}

// Healthy reports whether the last call reached Ollama.
func (s *server) Healthy() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.healthy
}

// capabilities returns the server version and whether it can create adapter
// models, detected once per connection.
func (s *server) capabilities(ctx context.Context) (string, bool, error) {
	s.mu.Lock()
	if s.version != "" {
		v, a := s.version, s.adapters
		s.mu.Unlock()
		return v, a, nil
	}
	s.mu.Unlock()
	v, err := s.c.Version(ctx)
	s.setHealthy(err == nil)
	if err != nil {
		return "", false, ollamaErr("version", fmt.Errorf("asking Ollama its version: %w", err))
	}
	a := supportsAdapters(v)
	s.mu.Lock()
	s.version, s.adapters = v, a
	s.mu.Unlock()
	return v, a, nil
}

// noAdapters records that the server refused an adapter create, whatever
// its version said.
func (s *server) noAdapters() {
	s.mu.Lock()
	s.adapters = false
	s.mu.Unlock()
}

// supportsAdapters reports whether Ollama version v still creates adapter
// models: 0.34 removed it. Unparsable versions (dev builds) are assumed new.
func supportsAdapters(v string) bool {
	parts := strings.SplitN(strings.TrimPrefix(v, "v"), ".", 3)
	if len(parts) < 2 {
		return false
	}
	major, err1 := strconv.Atoi(parts[0])
	minor, err2 := strconv.Atoi(parts[1])
	if err1 != nil || err2 != nil {
		return false
	}
	return major == 0 && minor < 34
}

// create sends one create request and waits for its answer. The caller
// holds mutate.
func (s *server) create(ctx context.Context, req *api.CreateRequest) error {
	stream := false
	req.Stream = &stream
	return ollamaErr("create", s.c.Create(ctx, req, func(api.ProgressResponse) error { return nil }))
}
