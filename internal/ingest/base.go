package ingest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/ollama/ollama/api"

	"github.com/adapterd/adapterd/internal/lora"
	"github.com/adapterd/adapterd/internal/spec"
)

// goEngineArchs are the architectures Ollama runs on its own Go engine,
// which cannot load LoRA adapters: a native adapter model on such a base is
// created without error and then fails when used (shared/OLLAMA.md). The
// list is v0.24.0's OllamaEngineRequired (fs/ggml/ggml.go).
var goEngineArchs = map[string]bool{
	"gemma3": true, "gemma3n": true, "gemma4": true, "qwen3": true, "qwen3moe": true,
	"qwen35": true, "qwen35moe": true, "qwen3next": true, "qwen3vl": true, "qwen3vlmoe": true, "qwen25vl": true,
	"mistral3": true, "llama4": true, "mllama": true, "gptoss": true, "gpt-oss": true,
	"deepseek2": true, "deepseekocr": true, "olmo3": true, "laguna": true, "lfm2": true, "lfm2moe": true,
	"glm4moelite": true, "glmocr": true, "nemotron_h": true, "nemotron_h_moe": true, "nemotron_h_omni": true,
	"bert": true, "nomic-bert": true,
}

// baseDetails is what adapterd needs to know of a base model, cached per
// base digest: one show serves every folder on that base.
type baseDetails struct {
	Info lora.BaseInfo
	Show *api.ShowResponse
	// tensors is Info with the base's tensor shapes, from a verbose show;
	// nil until an adapter needs them (loraBaseInfo). Guarded by server.mu.
	tensors *lora.BaseInfo
}

func (s *server) base(ctx context.Context, name, digest string) (*baseDetails, error) {
	s.mu.Lock()
	if d, ok := s.bases[digest]; ok {
		s.mu.Unlock()
		return d, nil
	}
	s.mu.Unlock()
	show, err := s.c.Show(ctx, &api.ShowRequest{Model: name})
	if err != nil {
		return nil, ollamaErr("show", fmt.Errorf("show base %s: %w", name, err))
	}
	info, err := lora.BaseInfoFromModelInfo(show.ModelInfo)
	if err != nil {
		return nil, terminalf("base %s: %v", name, err)
	}
	s.setStore(storeOfBlob(show.Modelfile))
	d := &baseDetails{Info: info, Show: show}
	s.mu.Lock()
	if s.bases == nil {
		s.bases = map[string]*baseDetails{}
	}
	s.bases[digest] = d
	s.mu.Unlock()
	return d, nil
}

// loraBaseInfo is the tensor-level view of base d, called name, that adapter
// conversion and the tied-output check need, from a verbose show (the base
// file may be on another host). It is asked for once per base digest; the
// tensor map is shared and only read.
func (s *server) loraBaseInfo(ctx context.Context, name string, d *baseDetails) (lora.BaseInfo, error) {
	s.mu.Lock()
	cached := d.tensors
	s.mu.Unlock()
	if cached != nil {
		return *cached, nil
	}
	show, err := s.c.Show(ctx, &api.ShowRequest{Model: name, Verbose: true})
	if err != nil {
		return lora.BaseInfo{}, ollamaErr("show", fmt.Errorf("show base %s: %w", name, err))
	}
	info := d.Info
	b := lora.BaseInfo{Arch: info.Arch, Heads: info.Heads, KVHeads: info.KVHeads, Layers: info.Layers, Tensors: map[string][]uint64{}}
	for _, t := range show.Tensors {
		b.Tensors[t.Name] = t.Shape
	}
	if len(b.Tensors) == 0 {
		return b, fmt.Errorf("Ollama did not list the tensors of base %s", name)
	}
	s.mu.Lock()
	d.tensors = &b
	s.mu.Unlock()
	return b, nil
}

// storeOfBlob returns the model store that holds the FROM blob of a show's
// Modelfile: <models>/blobs/sha256-… . Empty when there is none.
func storeOfBlob(modelfile string) string {
	for _, line := range strings.Split(modelfile, "\n") {
		p, ok := strings.CutPrefix(strings.TrimSpace(line), "FROM ")
		if !ok {
			continue
		}
		p = strings.TrimSpace(p)
		if filepath.IsAbs(p) && filepath.Base(filepath.Dir(p)) == "blobs" {
			return filepath.Dir(filepath.Dir(p))
		}
		return ""
	}
	return ""
}

// baseGGUFPath finds the base model's weights on this host: the FROM blob
// path that show reports, else the manifest under ollama.models_dir.
func baseGGUFPath(name string, show *api.ShowResponse, modelsDir string) (string, error) {
	var tried []string
	sc := bufio.NewScanner(strings.NewReader(show.Modelfile))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if !strings.HasPrefix(line, "FROM ") {
			continue
		}
		p := strings.TrimSpace(strings.TrimPrefix(line, "FROM "))
		if !filepath.IsAbs(p) {
			continue
		}
		if err := readable(p); err == nil {
			return p, nil
		} else {
			tried = append(tried, err.Error())
		}
		break
	}
	if modelsDir != "" {
		p, err := manifestModelPath(modelsDir, name)
		if err == nil {
			if err = readable(p); err == nil {
				return p, nil
			}
		}
		tried = append(tried, err.Error())
	}
	if len(tried) == 0 {
		return "", terminalf("base %s: Ollama did not say where its weights are; set ollama.models_dir to Ollama's model store", name)
	}
	return "", terminalf("base %s: cannot read its weights (%s); merge needs read access to Ollama's model store: run adapterd as a user in Ollama's group, or set ollama.models_dir", name, strings.Join(tried, "; "))
}

func readable(p string) error {
	f, err := os.Open(p)
	if err != nil {
		if errors.Is(err, fs.ErrPermission) {
			return fmt.Errorf("%s: permission denied for uid %d", p, os.Getuid())
		}
		return err
	}
	return f.Close()
}

// manifestModelPath returns the blob path of the model layer of name's
// manifest in modelsDir.
func manifestModelPath(modelsDir, name string) (string, error) {
	m, err := readManifest(modelsDir, spec.CanonicalModelName(name))
	if err != nil {
		return "", err
	}
	if m == nil {
		return "", fmt.Errorf("%s: no manifest for %s", modelsDir, name)
	}
	for _, l := range m.Layers {
		if l.MediaType == "application/vnd.ollama.image.model" {
			return filepath.Join(modelsDir, "blobs", strings.Replace(l.Digest, ":", "-", 1)), nil
		}
	}
	return "", fmt.Errorf("%s: the manifest of %s has no model layer", modelsDir, name)
}

// parseShowParameters reads the `parameters` text of a show response
// ("key value" lines, strings quoted) into typed values.
func parseShowParameters(text string) map[string]any {
	out := map[string]any{}
	for _, line := range strings.Split(text, "\n") {
		key, val, ok := strings.Cut(strings.TrimSpace(line), " ")
		if !ok {
			continue
		}
		val = strings.TrimSpace(val)
		var v any = val
		if u, err := strconv.Unquote(val); err == nil {
			v = u
		} else if i, err := strconv.Atoi(val); err == nil {
			v = i
		} else if f, err := strconv.ParseFloat(val, 64); err == nil {
			v = f
		} else if b, err := strconv.ParseBool(val); err == nil {
			v = b
		}
		if key == "stop" {
			s, _ := out[key].([]string)
			out[key] = append(s, fmt.Sprint(v))
			continue
		}
		out[key] = v
	}
	return out
}
