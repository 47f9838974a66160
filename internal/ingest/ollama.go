package ingest

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ollama/ollama/api"

	"github.com/adapterd/adapterd/internal/spec"
)

// errAdaptersRemoved is the 400 that Ollama ≥ 0.34 answers to any create
// with `adapters`.
const errAdaptersRemoved = "LoRA adapters are no longer supported"

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

	mu        sync.Mutex
	list      map[string]api.ListModelResponse // by canonical name
	listAt    time.Time
	version   string
	adapters  bool // the server can create adapter models
	capableAt time.Time
	healthy   bool
	bases     map[string]*baseDetails // by base digest
}

const listTTL = 2 * time.Second

func newServer(c *api.Client) *server { return &server{c: c} }

// models returns the model list, cached for listTTL.
func (s *server) models(ctx context.Context) (map[string]api.ListModelResponse, error) {
	s.mu.Lock()
	if s.list != nil && time.Since(s.listAt) < listTTL {
		l := s.list
		s.mu.Unlock()
		return l, nil
	}
	s.mu.Unlock()
	s.mutate.RLock()
	resp, err := s.c.List(ctx)
	s.mutate.RUnlock()
	s.setHealthy(err == nil)
	if err != nil {
		return nil, fmt.Errorf("listing Ollama models: %w", err)
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

// delete deletes a model under the mutation lock.
func (s *server) delete(ctx context.Context, name string) error {
	s.mutate.Lock()
	defer s.mutate.Unlock()
	return s.c.Delete(ctx, &api.DeleteRequest{Model: name})
}

// freshModels lists models without the cache: for checks right after
// adapterd changed something.
func (s *server) freshModels(ctx context.Context) (map[string]api.ListModelResponse, error) {
	s.invalidate()
	return s.models(ctx)
}

// invalidate drops the cached list after adapterd changed a model.
func (s *server) invalidate() {
	s.mu.Lock()
	s.list = nil
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
		return "", false, fmt.Errorf("asking Ollama its version: %w", err)
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

func isAdaptersRemoved(err error) bool {
	return err != nil && strings.Contains(err.Error(), errAdaptersRemoved)
}

// isNotFound reports whether an API error is Ollama's 404.
func isNotFound(err error) bool {
	var se api.StatusError
	if errors.As(err, &se) {
		return se.StatusCode == 404
	}
	return err != nil && strings.Contains(err.Error(), "not found")
}
