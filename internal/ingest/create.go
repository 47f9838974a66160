package ingest

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/ollama/ollama/api"

	"github.com/adapterd/adapterd/internal/blob"
	"github.com/adapterd/adapterd/internal/gguf"
	"github.com/adapterd/adapterd/internal/lora"
	"github.com/adapterd/adapterd/internal/safefile"
	"github.com/adapterd/adapterd/internal/spec"
)

// tmpPrefix names the temporary models a create goes through. The user's
// name only ever receives a finished model by an atomic copy, so a crash or
// SIGTERM mid-create never leaves a half-made model under it.
const tmpPrefix = "adapterd-tmp-"

// tempModels are the temporary model names of the creates running now:
// cleanupPending skips them. A name is in it from before its create until
// its dropTemp.
type tempModels struct {
	mu    sync.Mutex
	names map[string]bool
}

func (t *tempModels) set(name string, running bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.names == nil {
		t.names = map[string]bool{}
	}
	if running {
		t.names[name] = true
	} else {
		delete(t.names, name)
	}
}

func (t *tempModels) has(name string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.names[name]
}

// createJob is one create: the request, and what adapterd records for it.
type createJob struct {
	key, name, model string // name is canonical, model as the user wrote it
	dropDir          string
	input            string
	strategy         spec.Strategy
	layer            string // digest of the blob adapterd uploaded for it
	owned            *OwnedModel
	// replace: the model under name may be replaced whoever made it (the
	// user named it on the command line); the daemon never sets it.
	replace bool
	req     *api.CreateRequest
	// checks run against the new model before it takes the name; the
	// sidecar is where they are written, for the rejection's message.
	checks      []spec.Check
	sidecarFile string
	keep        int // versions to keep
}

// create builds the model for a valid folder and puts it under its name,
// as decision d says.
func (r *Reconciler) create(ctx context.Context, o *observed, d *Decision) error {
	_, err := r.createWith(ctx, o, d, false)
	return err
}

// createWith is create with the replace policy, returning the request it
// sent.
func (r *Reconciler) createWith(ctx context.Context, o *observed, d *Decision, replace bool) (*api.CreateRequest, error) {
	res := o.Folder.Resolved
	req, layer, err := r.request(ctx, o, d)
	if err != nil {
		return nil, err
	}
	j := createJob{key: o.Key, dropDir: o.DropDir, name: o.Name, model: res.Model, input: d.Input, strategy: d.Strategy,
		layer: layer, owned: o.Owned, replace: replace, req: req,
		checks: d.Checks, sidecarFile: o.Folder.SidecarFile, keep: d.KeepVersions}
	if d.Verify {
		err = r.createVerified(ctx, j)
	} else {
		err = r.createDirect(ctx, j)
	}
	if isAdaptersRemoved(err) {
		r.srv.noAdapters()
	}
	if err == nil {
		if m, ok := r.store.Model(j.name); ok {
			r.keepVersion(ctx, j, m.OllamaDigest)
		}
	}
	return req, err
}

// request makes the blob decision d's request needs (a GGUF LoRA or a
// merged model), uploads it and returns the request with its digest, and
// the digest alone.
func (r *Reconciler) request(ctx context.Context, o *observed, d *Decision) (*api.CreateRequest, string, error) {
	res, a, base := o.Folder.Resolved, o.Folder.Adapter, o.Server.Base
	req := *d.Request
	var layer string
	var err error
	switch d.Strategy {
	case spec.StrategyNative:
		if layer, err = r.nativeBlob(ctx, o.Key, res, a, o.Files.Digests, base); err == nil {
			req.Adapters = map[string]string{"adapter.gguf": layer}
		}
	case spec.StrategyMerge:
		if layer, err = r.mergeBlob(ctx, o.Key, res, a, base); err == nil {
			req.Files = map[string]string{"model.gguf": layer}
		}
	default:
		err = fmt.Errorf("unknown strategy %q", d.Strategy)
	}
	if err != nil {
		return nil, "", err
	}
	return &req, layer, nil
}

// nativeBlob uploads the adapter as one GGUF LoRA, for Ollama to apply to
// the base, and returns its digest. PEFT files are converted by adapterd first: Ollama's
// own PEFT conversion permutes the wrong side of llama q/k deltas, and
// knows only llama and gemma2. A GGUF LoRA in F16, BF16 or Q8_0 is written
// out in F32 too (lora.Adapter.NativeAsIs says why).
func (r *Reconciler) nativeBlob(ctx context.Context, key string, res *spec.Resolved, a *lora.Adapter,
	digests map[string]string, base *baseDetails) (string, error) {
	path, digest := a.Files[0], digests[a.Files[0]]
	open := func() (*os.File, int64, error) { return a.Open(path) }
	if !a.NativeAsIs() {
		var info lora.BaseInfo
		if a.Format == lora.FormatPEFT {
			var err error
			if info, err = r.srv.loraBaseInfo(ctx, res.Base, base); err != nil {
				return "", err
			}
		}
		ad, err := a.Weights(info)
		if err != nil {
			return "", &terminalError{err}
		}
		tmp, d, err := r.writeTemp(key, "adapter.gguf", ad.WriteGGUF)
		if err != nil {
			return "", err
		}
		defer os.Remove(tmp)
		digest, open = d, blob.OpenPath(tmp)
	}
	if err := r.keepArtifact(open); err != nil {
		return "", err
	}
	n, err := blob.UploadWatched(ctx, r.srv.c, digest, open, r.report(key, "upload"))
	if err != nil {
		return "", err
	}
	r.metrics.BytesUploaded(n)
	return digest, nil
}

// mergeBlob folds the LoRA into the base's weights, streaming a new GGUF
// one tensor at a time, uploads it for Ollama to import as a plain model,
// and returns its digest.
func (r *Reconciler) mergeBlob(ctx context.Context, key string, res *spec.Resolved, a *lora.Adapter, base *baseDetails) (string, error) {
	path, err := baseGGUFPath(res.Base, base.Show, r.config().Ollama.ModelsDir)
	if err != nil {
		return "", err
	}
	bf, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer bf.Close()
	st, err := bf.Stat()
	if err != nil {
		return "", err
	}
	gf, err := gguf.Read(bf, st.Size())
	if err != nil {
		return "", fmt.Errorf("base %s weights %s: %w", res.Base, path, err)
	}
	var info lora.BaseInfo
	if a.Format == lora.FormatPEFT {
		if info, err = lora.BaseInfoFromGGUF(gf); err != nil {
			return "", terminalf("base %s: %v", res.Base, err)
		}
	}
	ad, err := a.Weights(info)
	if err != nil {
		return "", &terminalError{err}
	}
	q, err := lora.ParseQuantize(res.Quantize)
	if err != nil {
		return "", &terminalError{err}
	}
	tmp, digest, err := r.writeTemp(key, "merged.gguf", func(w io.Writer) error {
		cw := &ctxWriter{ctx: ctx, w: w, total: st.Size(), report: r.report(key, "merge")}
		_, err := lora.MergeWith(cw, bf, gf, ad, lora.MergeOptions{Quantize: q})
		return err
	})
	if err != nil {
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		return "", terminalf("merge: %w", err)
	}
	defer os.Remove(tmp)
	if err := r.keepArtifact(blob.OpenPath(tmp)); err != nil {
		return "", err
	}
	n, err := blob.UploadWatched(ctx, r.srv.c, digest, blob.OpenPath(tmp), r.report(key, "upload merged model"))
	if err != nil {
		return "", err
	}
	r.metrics.BytesUploaded(n)
	// adapterd quantized the merged file itself (lora.MergeWith): Ollama
	// refuses quantize for GGUF imports (0.24.0 but for F16/BF16 files,
	// 0.34.4 always).
	return digest, nil
}

// writeTemp writes a file under state_dir/tmp through write, hashing it on
// the way, and returns its path and digest. The caller removes it.
func (r *Reconciler) writeTemp(key, suffix string, write func(io.Writer) error) (string, string, error) {
	dir := filepath.Join(r.config().StateDir, "tmp")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", err
	}
	f, err := os.CreateTemp(dir, key+"-*-"+suffix)
	if err != nil {
		return "", "", err
	}
	h := newBackgroundHash()
	bw := bufio.NewWriterSize(io.MultiWriter(f, h), 1<<20)
	err = write(bw)
	if err == nil {
		err = bw.Flush()
	}
	sum := h.Sum()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", "", err
	}
	return f.Name(), "sha256:" + hex.EncodeToString(sum), nil
}

// backgroundHash hashes what is written to it in another goroutine, so a
// merge and its sha256 use both cores instead of taking turns (measured:
// 452 MB/s for the merge alone, 143 MB/s with the hash inline).
type backgroundHash struct {
	ch   chan []byte
	done chan []byte
}

func newBackgroundHash() *backgroundHash {
	b := &backgroundHash{ch: make(chan []byte, 8), done: make(chan []byte, 1)}
	go func() {
		h := sha256.New()
		for p := range b.ch {
			h.Write(p)
		}
		b.done <- h.Sum(nil)
	}()
	return b
}

// Write queues a copy of p: the caller may reuse p at once.
func (b *backgroundHash) Write(p []byte) (int, error) {
	b.ch <- append([]byte(nil), p...)
	return len(p), nil
}

// Sum waits for everything written to be hashed and returns the digest. The
// hash is finished after Sum; write nothing more.
func (b *backgroundHash) Sum() []byte {
	close(b.ch)
	return <-b.done
}

// ctxWriter fails writes once ctx is done, so a long merge stops promptly
// at SIGTERM.
type ctxWriter struct {
	ctx context.Context
	w   io.Writer
	// report, when set, hears how much was written of about total.
	done, total int64
	report      func(done, total int64)
}

func (c *ctxWriter) Write(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := c.w.Write(p)
	if c.report != nil {
		c.done += int64(n)
		c.report(c.done, c.total)
	}
	return n, err
}

// createDirect creates the model straight under its name: one request, as
// `ollama create` makes. Ollama writes a model's manifest last, in one step,
// so the name never holds a half-made model. The ownership record, naming
// the layer only adapterd uploaded, is written before the create, so a
// create that lands after a crash or SIGTERM is still known as ours.
func (r *Reconciler) createDirect(ctx context.Context, j createJob) error {
	r.srv.mutate.Lock()
	err := r.checkDestination(ctx, j)
	if err == nil {
		err = r.recordPending(j, "", j.layer)
	}
	if err == nil {
		j.req.Model = j.name
		r.board.beginStep(j.key, "create")
		if err = r.srv.create(ctx, j.req); err != nil && ctx.Err() == nil {
			r.dropPending(j.name) // Ollama answered: nothing landed
		}
	}
	r.srv.mutate.Unlock()
	if err != nil {
		return err
	}
	r.srv.mutate.RLock()
	cur, err := r.srv.current(ctx, j.name)
	r.srv.mutate.RUnlock()
	if err != nil {
		return err // the create landed; the next pass adopts it by its layer
	}
	if cur == nil {
		return fmt.Errorf("model %s missing right after create", j.model)
	}
	return r.confirm(j, cur)
}

// createVerified creates the model under a temporary name, loads it, and
// only then copies it to the user's name in one step: a model that cannot
// load (LoRA on Ollama's Go engine) never replaces a working one.
func (r *Reconciler) createVerified(ctx context.Context, j createJob) error {
	tmp := tmpPrefix + randomHex(8)
	r.srv.temps.set(tmp, true)
	defer r.srv.temps.set(tmp, false)
	if err := r.store.Update(func(s *stateFile) bool { s.Pending = append(s.Pending, tmp); return true }); err != nil {
		return err
	}
	// A create we stopped waiting for (SIGTERM) may still land on the
	// server after our delete; then only a later retry can remove it.
	answered := false
	defer func() { r.dropTemp(tmp, answered) }()
	j.req.Model = tmp
	r.board.beginStep(j.key, "create")
	r.srv.mutate.Lock()
	err := r.srv.create(ctx, j.req)
	r.srv.mutate.Unlock()
	answered = ctx.Err() == nil
	if err != nil {
		return err
	}
	r.board.beginStep(j.key, "verify")
	if err := r.verify(ctx, tmp); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if unanswered(err) {
			return ollamaErr("generate", fmt.Errorf("verify could not run: %w", err)) // Ollama did not answer: try again
		}
		return terminalf("verify: the new model cannot generate (%s); if the base runs on Ollama's Go engine set strategy: merge", spec.OneLine(err.Error()))
	}
	if len(j.checks) > 0 {
		r.board.beginStep(j.key, "check")
		if err := r.runChecks(ctx, j, tmp); err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	r.srv.mutate.Lock()
	defer r.srv.mutate.Unlock()
	tm, err := r.srv.current(ctx, spec.CanonicalModelName(tmp))
	if err != nil {
		return err
	}
	if tm == nil {
		return fmt.Errorf("temporary model %s missing right after create", tmp)
	}
	// The name may have been taken while the model was made and loaded.
	if err := r.checkDestination(ctx, j); err != nil {
		return err
	}
	if err := r.recordPending(j, tm.Digest, ""); err != nil {
		return err
	}
	if err := r.srv.c.Copy(ctx, &api.CopyRequest{Source: tmp, Destination: j.name}); err != nil {
		return ollamaErr("copy", fmt.Errorf("copying the new model to %s: %w", j.name, err))
	}
	// A copy copies the manifest's bytes, so the digest is the temporary
	// model's.
	cur := *tm
	cur.Name, cur.Model = j.name, j.name
	return r.confirm(j, &cur)
}

// checkDestination makes sure the name is still free, or still holds a
// model adapterd made, right before it is written. The caller holds mutate,
// so no other create of adapterd's can slip in between.
func (r *Reconciler) checkDestination(ctx context.Context, j createJob) error {
	cur, err := r.srv.current(ctx, j.name)
	if err != nil || cur == nil {
		return err
	}
	if j.replace || (j.owned != nil && j.owned.Owns(cur.Digest)) {
		return nil
	}
	return &conflictError{fmt.Sprintf("model %s was created in Ollama by someone else while adapterd was preparing it; adapterd will not overwrite it: pick another model: name or remove that model", j.model)}
}

// recordPending writes the ownership of a create before it can reach the
// user's name: its digest when known (a copy), or its layer (a direct create).
func (r *Reconciler) recordPending(j createJob, digest, layer string) error {
	return r.store.Update(func(s *stateFile) bool {
		m := s.Models[j.name]
		m.Name, m.Key, m.DropDir, m.RemovedAt = j.model, j.key, j.dropDir, nil
		m.PendingDigest, m.PendingLayer, m.PendingInput, m.PendingStrategy = digest, layer, j.input, string(j.strategy)
		s.Models[j.name] = m
		return true
	})
}

// dropPending forgets a create that Ollama refused.
func (r *Reconciler) dropPending(name string) {
	r.store.Update(func(s *stateFile) bool {
		m, ok := s.Models[name]
		if !ok {
			return false
		}
		if m.OllamaDigest == "" {
			delete(s.Models, name)
			return true
		}
		m.PendingDigest, m.PendingLayer, m.PendingInput, m.PendingStrategy = "", "", "", ""
		s.Models[name] = m
		return true
	})
}

// confirm records the model adapterd just put under j.name as its own.
func (r *Reconciler) confirm(j createJob, cur *api.ListModelResponse) error {
	r.srv.patch(j.name, cur)
	return r.store.Update(func(s *stateFile) bool {
		s.Models[j.name] = OwnedModel{Name: j.model, Key: j.key, DropDir: j.dropDir, OllamaDigest: cur.Digest, InputDigest: j.input,
			Strategy: string(j.strategy), Created: time.Now().UTC(), Versions: s.Models[j.name].Versions}
		return true
	})
}

// dropTemp deletes a temporary model, even when ctx was cancelled, and
// forgets it once it is surely gone: deleted, or not found after Ollama
// answered the create (answered). One not surely gone stays pending and is
// retried at every resync and at the next start.
func (r *Reconciler) dropTemp(tmp string, answered bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := r.srv.delete(ctx, tmp)
	if err != nil && (!isNotFound(err) || !answered) {
		if !isNotFound(err) {
			r.log.Warn("cannot delete temporary model; it is retried later", "model", tmp, "err", err)
		}
		return
	}
	r.srv.forget(spec.CanonicalModelName(tmp))
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

// cleanupPending deletes temporary models left behind by a crash, or by a
// create that was abandoned and landed late. Creates in flight are skipped.
func (r *Reconciler) cleanupPending(ctx context.Context) {
	r.store.mu.Lock()
	pending := append([]string(nil), r.store.st.Pending...)
	r.store.mu.Unlock()
	for _, p := range pending {
		if busy := r.srv.temps.has(p); !busy && strings.HasPrefix(p, tmpPrefix) && ctx.Err() == nil {
			r.dropTemp(p, true)
		}
	}
}

// verify loads the model and generates one token: the only way to catch a
// model that creates fine but cannot load (LoRA on Ollama's Go engine).
func (r *Reconciler) verify(ctx context.Context, model string) error {
	stream := false
	return r.srv.c.Generate(ctx, &api.GenerateRequest{Model: model, Prompt: "hello", Raw: true, Stream: &stream,
		Options: map[string]any{"num_predict": 1}}, func(api.GenerateResponse) error { return nil })
}

// unanswered reports whether err is Ollama not answering at all (down,
// connection dropped), rather than Ollama saying the model cannot run.
func unanswered(err error) bool {
	var ue *url.Error
	var ne net.Error
	return errors.As(err, &ue) || errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// keepArtifact copies the file a create uploads (the GGUF LoRA, or the
// merged GGUF) to r.artifact, for a one-shot create whose Modelfile must
// rebuild the same model. The daemon keeps nothing.
func (r *Reconciler) keepArtifact(open blob.Opener) error {
	if r.once == nil || r.once.artifact == "" {
		return nil
	}
	src, _, err := open()
	if err != nil {
		return err
	}
	defer src.Close()
	return safefile.WriteAtomicFunc(r.once.artifact, 0o644, func(dst *os.File) error {
		_, err := io.Copy(dst, src)
		return err
	})
}
