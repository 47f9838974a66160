package ollamatest

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/ollama/ollama/api"

	"github.com/adapterd/adapterd/internal/blob"
)

// Greedy generates n tokens from prompt with raw, temperature 0 and a fixed
// seed, which is deterministic on the llama.cpp engine. A reply that never
// says done is an error: Ollama >= 0.30 answers that way, with no error,
// when its llama-server fails the completion.
func (s *Server) Greedy(ctx context.Context, model, prompt string, n int) (string, error) {
	stream := false
	var out strings.Builder
	done := false
	err := s.Client.Generate(ctx, &api.GenerateRequest{
		Model:  model,
		Prompt: prompt,
		Raw:    true,
		Stream: &stream,
		Options: map[string]any{
			"temperature": 0, "seed": 42, "num_predict": n, "top_k": 1,
		},
	}, func(r api.GenerateResponse) error {
		out.WriteString(r.Response)
		done = done || r.Done
		return nil
	})
	if err == nil && !done {
		err = fmt.Errorf("generate %s: the reply ended without done (llama-server failed the completion?)", model)
	}
	return out.String(), err
}

// ImportGGUF creates model from a local GGUF file through `files`, the
// way any plain GGUF import works on every version.
func (s *Server) ImportGGUF(ctx context.Context, model, path string) error {
	digest, err := blob.FileDigest(path)
	if err != nil {
		return err
	}
	if _, err := blob.Upload(ctx, s.Client, path, digest); err != nil {
		return err
	}
	return s.Client.Create(ctx, &api.CreateRequest{
		Model: model,
		Files: map[string]string{filepath.Base(path): digest},
	}, func(api.ProgressResponse) error { return nil })
}

// CreateWithAdapter uploads the adapter files and creates model from base
// with them as `adapters`: Ollama's own native path, used here to check the
// bed itself.
func (s *Server) CreateWithAdapter(ctx context.Context, model, base string, files ...string) error {
	adapters := map[string]string{}
	for _, p := range files {
		d, err := blob.FileDigest(p)
		if err != nil {
			return err
		}
		if _, err := blob.Upload(ctx, s.Client, p, d); err != nil {
			return err
		}
		adapters[filepath.Base(p)] = d
	}
	err := s.Client.Create(ctx, &api.CreateRequest{Model: model, From: base, Adapters: adapters},
		func(api.ProgressResponse) error { return nil })
	if err != nil {
		return fmt.Errorf("create %s: %w", model, err)
	}
	return nil
}
