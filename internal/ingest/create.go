package ingest

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/ollama/ollama/api"

	"github.com/adapterd/adapterd/internal/spec"
)

// invalidError is a create failure that retrying cannot fix: the inputs
// must change first.
type invalidError struct{ msg string }

func (e *invalidError) Error() string { return e.msg }

func invalidf(format string, args ...any) error {
	return &invalidError{fmt.Sprintf(format, args...)}
}

// tmpPrefix names the temporary models a create goes through. The user's
// name only ever receives a finished model by an atomic copy, so a crash or
// SIGTERM mid-create never leaves a half-made model under it.
const tmpPrefix = "adapterd-tmp-"

// nativePEFTArchs are the base architectures Ollama's own safetensors
// adapter conversion accepts.
var nativePEFTArchs = map[string]bool{"llama": true, "gemma2": true}

// chooseStrategy resolves auto and checks that the chosen strategy can work
// on this server.
func (r *Reconciler) chooseStrategy(ctx context.Context, res *spec.Resolved, a *spec.Adapter) (spec.Strategy, error) {
	version, adapters, err := r.srv.capabilities(ctx)
	if err != nil {
		return "", err
	}
	s := res.Strategy
	if s == "" || s == spec.StrategyAuto {
		if !adapters {
			return spec.StrategyMerge, nil
		}
		s = spec.StrategyNative
	}
	if s == spec.StrategyNative && !adapters {
		return s, fmt.Errorf("Ollama %s no longer creates LoRA adapter models; set strategy: merge (or auto)", version)
	}
	return s, nil
}

func (r *Reconciler) create(ctx context.Context, key, name string, res *spec.Resolved, a *spec.Adapter,
	strategy spec.Strategy, digests map[string]string, input string) error {
	if strategy != spec.StrategyNative {
		return fmt.Errorf("strategy %s is not implemented yet; set strategy: native on Ollama ≤ 0.33", strategy)
	}
	show, err := r.srv.c.Show(ctx, &api.ShowRequest{Model: res.Base})
	if err != nil {
		return fmt.Errorf("show base %s: %w", res.Base, err)
	}
	info, err := spec.BaseInfoFromModelInfo(show.ModelInfo)
	if err != nil {
		return invalidf("base %s: %v", res.Base, err)
	}
	if err := a.CheckBase(res.Base, info); err != nil {
		return &invalidError{err.Error()}
	}
	if a.Format == spec.FormatPEFT && !nativePEFTArchs[info.Arch] {
		return invalidf("%s: Ollama converts PEFT adapters only for llama and gemma2 bases, and base %s is %s; convert the adapter to a GGUF LoRA (llama.cpp convert_lora_to_gguf.py)",
			a.Files[len(a.Files)-1], res.Base, info.Arch)
	}

	adapters := map[string]string{}
	for _, p := range a.Files {
		n, err := UploadBlob(ctx, r.srv.c, p, digests[p])
		if err != nil {
			return err
		}
		r.metrics.BytesUploaded(n)
		adapters[filepath.Base(p)] = digests[p]
	}
	req := &api.CreateRequest{
		From:       res.Base,
		Adapters:   adapters,
		System:     res.System,
		Template:   res.Template,
		Parameters: res.Parameters,
	}
	for _, m := range res.Messages {
		req.Messages = append(req.Messages, api.Message{Role: m.Role, Content: m.Content})
	}
	if len(res.License) == 1 {
		req.License = res.License[0]
	} else if len(res.License) > 1 {
		req.License = []string(res.License)
	}
	if err := r.createAs(ctx, name, req); err != nil {
		if isAdaptersRemoved(err) {
			r.srv.noAdapters()
		}
		return err
	}
	if res.Verify {
		if err := r.verify(ctx, res.Model); err != nil {
			return invalidf("verify: model %s was created but cannot generate: %v; set strategy: merge for this base", res.Model, err)
		}
	}
	list, err := r.srv.models(ctx)
	if err != nil {
		return err
	}
	got, ok := list[name]
	if !ok {
		return fmt.Errorf("model %s missing right after create", res.Model)
	}
	return r.store.Update(func(s *stateFile) bool {
		s.Models[name] = OwnedModel{Name: res.Model, Key: key, OllamaDigest: got.Digest, InputDigest: input,
			Strategy: string(strategy), Created: time.Now().UTC()}
		return true
	})
}

// createAs creates req under a temporary name, checks it, then copies it to
// name in one step and deletes the temporary model.
func (r *Reconciler) createAs(ctx context.Context, name string, req *api.CreateRequest) error {
	tmp := tmpPrefix + randomHex(8)
	if err := r.store.Update(func(s *stateFile) bool { s.Pending = append(s.Pending, tmp); return true }); err != nil {
		return err
	}
	defer r.dropTemp(tmp)
	req.Model = tmp
	stream := false
	req.Stream = &stream
	if err := r.srv.c.Create(ctx, req, func(api.ProgressResponse) error { return nil }); err != nil {
		return err
	}
	show, err := r.srv.c.Show(ctx, &api.ShowRequest{Model: tmp})
	if err != nil {
		return fmt.Errorf("checking the new model: %w", err)
	}
	if show.System != req.System {
		return fmt.Errorf("the new model's system prompt is %q, want %q", show.System, req.System)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	r.srv.invalidate()
	if err := r.srv.c.Copy(ctx, &api.CopyRequest{Source: tmp, Destination: name}); err != nil {
		return fmt.Errorf("copying the new model to %s: %w", name, err)
	}
	return nil
}

// dropTemp deletes a temporary model, even when ctx was cancelled, and
// forgets it once it is gone.
func (r *Reconciler) dropTemp(tmp string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := r.srv.c.Delete(ctx, &api.DeleteRequest{Model: tmp})
	if err != nil && !isNotFound(err) {
		r.log.Warn("cannot delete temporary model; it is retried at next start", "model", tmp, "err", err)
		return
	}
	r.store.Update(func(s *stateFile) bool {
		out := s.Pending[:0]
		for _, p := range s.Pending {
			if p != tmp {
				out = append(out, p)
			}
		}
		s.Pending = out
		return true
	})
}

// cleanupPending deletes temporary models a previous run left behind.
func (r *Reconciler) cleanupPending(ctx context.Context) {
	r.store.mu.Lock()
	pending := append([]string(nil), r.store.st.Pending...)
	r.store.mu.Unlock()
	for _, p := range pending {
		if strings.HasPrefix(p, tmpPrefix) && ctx.Err() == nil {
			r.dropTemp(p)
		}
	}
}

// verify loads the model and generates one token: the only way to catch a
// model that creates fine but cannot load (LoRA on Ollama's Go engine).
func (r *Reconciler) verify(ctx context.Context, model string) error {
	stream := false
	err := r.srv.c.Generate(ctx, &api.GenerateRequest{Model: model, Prompt: "hello", Raw: true, Stream: &stream,
		Options: map[string]any{"num_predict": 1}}, func(api.GenerateResponse) error { return nil })
	if err != nil {
		return errors.New(oneLine(err.Error()))
	}
	return nil
}
