package ingest

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ollama/ollama/api"

	"github.com/adapterd/adapterd/internal/blob"
	"github.com/adapterd/adapterd/internal/ollamatest"
	"github.com/adapterd/adapterd/internal/testfixture"
)

// Every entry of knownRefusals is provoked on the real server it names, and
// classify must call Ollama's answer terminal.
func TestKnownRefusalsOnRealServers(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "tiny.gguf")
	if err := testfixture.TinyLlama().WriteGGUF(path); err != nil {
		t.Fatal(err)
	}
	digest, err := blob.FileDigest(path)
	if err != nil {
		t.Fatal(err)
	}
	provoke := map[string]func(s *ollamatest.Server) error{
		"template error": func(s *ollamatest.Server) error {
			return s.Client.Create(ctx, &api.CreateRequest{Model: "t1", From: "base", Template: "{{ .Prompt"}, nop)
		},
		"quantization is only supported for": func(s *ollamatest.Server) error {
			return s.Client.Create(ctx, &api.CreateRequest{Model: "t2", Files: map[string]string{"m.gguf": digest}, Quantize: "q8_0"}, nop)
		},
		"quantization is only supported for safetensors": func(s *ollamatest.Server) error {
			return s.Client.Create(ctx, &api.CreateRequest{Model: "t3", Files: map[string]string{"m.gguf": digest}, Quantize: "q8_0"}, nop)
		},
		"invalid model name": func(s *ollamatest.Server) error {
			return s.Client.Create(ctx, &api.CreateRequest{Model: "bad name!", From: "base"}, nop)
		},
	}
	for _, k := range knownRefusals {
		t.Run(k.text+"@"+k.version, func(t *testing.T) {
			fn, ok := provoke[k.text]
			if !ok {
				t.Fatalf("no test provokes %q", k.text)
			}
			s := ollamatest.Get(t, k.version)
			if err := s.ImportGGUF(ctx, "base", path); err != nil {
				t.Fatal(err)
			}
			if _, err := blob.Upload(ctx, s.Client, path, digest); err != nil {
				t.Fatal(err)
			}
			err := fn(s)
			if err == nil {
				t.Fatal("Ollama accepted the request")
			}
			if !strings.Contains(strings.ToLower(err.Error()), k.text) {
				t.Fatalf("Ollama %s answered %q, which does not contain %q", k.version, err, k.text)
			}
			if c := classify(err); c != terminal {
				t.Errorf("classify(%q) = %v, want terminal", err, c)
			}
		})
	}
}

func nop(api.ProgressResponse) error { return nil }
