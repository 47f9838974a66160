package ingest

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/ollama/ollama/api"

	"github.com/adapterd/adapterd/internal/spec"
	"github.com/adapterd/adapterd/internal/status"
)

// Rollouts: a new model must pass its checks (checks: in the sidecar)
// before it takes its name, each model put under a name is also kept under
// a version name, and a rollback puts a kept version back in one copy.
//
// What plan needs to decide is in the state file, so that a restart decides
// the same: a rejected input is not tried again until the folder changes
// (its input digest differs), and a pin holds the name at a rolled-back
// version until the folder changes or the key is unpinned.

// Version is one kept copy of a model under its version name.
type Version struct {
	Name    string    `json:"name"`   // as the user spelled the model, tag replaced: name:v-<12 hex>
	Digest  string    `json:"digest"` // Ollama's manifest digest of the copy
	Input   string    `json:"input"`  // the input digest it was made from
	Created time.Time `json:"created"`
}

// Rollout is what a key's rollouts leave to remember between passes.
type Rollout struct {
	// Rejected is the input whose model failed a check; nil when none.
	Rejected *Rejection `json:"rejected,omitempty"`
	// Pin holds the name at a rolled-back version; nil when not pinned.
	Pin *Pin `json:"pin,omitempty"`
}

// Rejection is a new model that failed a check.
type Rejection struct {
	Input  string    `json:"input"`
	Reason string    `json:"reason"` // the status error: the check, the answer, the expression
	At     time.Time `json:"at"`
}

// Pin is a rollback: the version under the name, and the folder's input
// when it was rolled back. A folder whose input is still Input is not made
// into a model again.
type Pin struct {
	Version string    `json:"version"`
	Input   string    `json:"input"`
	At      time.Time `json:"at"`
}

// versionName is the name a model made from input is kept under: the user's
// model name with its tag replaced by "v-" and the first 12 hex digits of
// the input digest. The input digest covers the model name, so two keys
// never make the same version name.
func versionName(model, input string) string {
	repo := model
	if i := strings.LastIndex(model, ":"); i > strings.LastIndex(model, "/") {
		repo = model[:i]
	}
	hex := strings.TrimPrefix(input, "sha256:")
	if len(hex) > 12 {
		hex = hex[:12]
	}
	return repo + ":v-" + hex
}

// rejectedError is a new model that failed one of its checks: the model
// under the name is unchanged, and the input is not tried again.
type rejectedError struct {
	file   string // the sidecar, where checks: are written
	index  int
	answer string
	expr   string // the expression that failed
	expect bool   // expr is the check's expect (else its reject)
	model  string
}

func (e *rejectedError) Error() string {
	how := "does not match expect"
	if !e.expect {
		how = "matches reject"
	}
	return fmt.Sprintf("%s: checks[%d] failed: the answer %s %s %s; the model under %s is unchanged; fix the adapter or the check",
		e.file, e.index, spec.Quote(shorten(e.answer, 80)), how, spec.Quote(e.expr), e.model)
}

func shorten(s string, n int) string {
	s = spec.OneLine(s)
	if r := []rune(s); len(r) > n {
		return string(r[:n]) + "…"
	}
	return s
}

// Bounds on running checks: a model that never stops, or an Ollama that
// never answers, must not hold a worker, and an answer is kept only up to
// what an expression needs to see.
const (
	checkTimeout   = 2 * time.Minute // one check's generate
	checksTimeout  = 5 * time.Minute // all of a model's checks
	maxAnswerBytes = 64 << 10        // of an answer, the rest is not read
)

// runChecks runs each check against model, in order, and returns the first
// failure as a *rejectedError. A check that cannot run is an ordinary
// (transient) error: it is never a pass.
func (r *Reconciler) runChecks(ctx context.Context, j createJob, model string) error {
	ctx, cancel := context.WithTimeout(ctx, checksTimeout)
	defer cancel()
	for i, c := range j.checks {
		expect, err1 := regexp.Compile(c.Expect)
		reject, err2 := regexp.Compile(c.Reject)
		if err := errors.Join(err1, err2); err != nil {
			return &terminalError{fmt.Errorf("%s: checks[%d]: %w", j.sidecarFile, i, err)} // Resolve checked them; never a panic
		}
		answer, err := r.generate(ctx, model, c)
		if err != nil {
			r.metrics.CheckDone(j.key, "error")
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return ollamaErr("generate", fmt.Errorf("checks[%d] could not run: %w", i, err))
		}
		fail := func(expr string, expect bool) error {
			r.metrics.CheckDone(j.key, "failed")
			return &rejectedError{file: j.sidecarFile, index: i, answer: answer, expr: expr, expect: expect, model: j.model}
		}
		if c.Expect != "" && !expect.MatchString(answer) {
			return fail(c.Expect, true)
		}
		if c.Reject != "" && reject.MatchString(answer) {
			return fail(c.Reject, false)
		}
		r.metrics.CheckDone(j.key, "passed")
	}
	return nil
}

// generate runs one check's prompt and returns the whole answer.
func (r *Reconciler) generate(ctx context.Context, model string, c spec.Check) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	stream := false
	var out strings.Builder
	err := r.srv.c.Generate(ctx, &api.GenerateRequest{Model: model, Prompt: c.Prompt, Raw: c.Raw, Stream: &stream,
		Options: c.GenerateOptions()}, func(g api.GenerateResponse) error {
		if out.Len() < maxAnswerBytes {
			out.WriteString(g.Response[:min(len(g.Response), maxAnswerBytes-out.Len())])
		}
		return nil
	})
	return out.String(), err
}

// keepVersion copies the model just put under j.name to its version name
// and forgets (deleting, when still ours) versions beyond j.keep. A version
// that cannot be kept is logged, not an error: the model under the name is
// what the user asked for, and it is there.
func (r *Reconciler) keepVersion(ctx context.Context, j createJob, digest string) {
	if r.once != nil || j.keep <= 0 {
		return
	}
	v := Version{Name: versionName(j.model, j.input), Digest: digest, Input: j.input, Created: time.Now().UTC()}
	if r.copyVersion(ctx, j, v) {
		r.pruneVersions(ctx, j.name, j.keep)
	}
}

// copyVersion records v and copies the model under j.name to it, unless
// its name holds a model adapterd did not make. It reports whether v is
// kept.
func (r *Reconciler) copyVersion(ctx context.Context, j createJob, v Version) bool {
	canon := spec.CanonicalModelName(v.Name)
	r.srv.mutate.Lock()
	defer r.srv.mutate.Unlock()
	cur, err := r.srv.current(ctx, canon)
	if err != nil {
		r.log.Warn("cannot keep version", "model", v.Name, "err", err)
		return false
	}
	owned, _ := r.store.Model(j.name)
	if cur != nil && !ownsVersion(owned, canon, cur.Digest) {
		r.log.Warn("version name holds a model adapterd did not make; not keeping this version", "model", v.Name)
		return false
	}
	// Recorded before the copy, as every create is: a copy that lands
	// after a crash is still known as ours.
	if err := r.store.Update(func(s *stateFile) bool {
		m, ok := s.Models[j.name]
		if !ok {
			return false
		}
		m.Versions = append(slicesDeleteName(m.Versions, canon), v)
		s.Models[j.name] = m
		return true
	}); err != nil {
		r.log.Warn("cannot keep version", "model", v.Name, "err", err)
		return false
	}
	if cur == nil || cur.Digest != v.Digest {
		if err := r.srv.c.Copy(ctx, &api.CopyRequest{Source: j.name, Destination: v.Name}); err != nil {
			r.log.Warn("cannot keep version", "model", v.Name, "err", err)
			return false
		}
	}
	return true
}

// ownsVersion reports whether the model under version name canon, with
// digest, is one adapterd recorded for m.
func ownsVersion(m OwnedModel, canon, digest string) bool {
	for _, v := range m.Versions {
		if spec.CanonicalModelName(v.Name) == canon && v.Digest == digest {
			return true
		}
	}
	return false
}

func slicesDeleteName(vs []Version, canon string) []Version {
	out := vs[:0:0]
	for _, v := range vs {
		if spec.CanonicalModelName(v.Name) != canon {
			out = append(out, v)
		}
	}
	return out
}

// pruneVersions deletes the oldest versions of the model under name beyond
// keep, but never the one under the name now.
func (r *Reconciler) pruneVersions(ctx context.Context, name string, keep int) {
	m, ok := r.store.Model(name)
	if !ok || len(m.Versions) <= keep {
		return
	}
	vs := append([]Version(nil), m.Versions...)
	sort.SliceStable(vs, func(a, b int) bool { return vs[a].Created.Before(vs[b].Created) })
	excess := len(vs) - keep
	var gone []string
	for _, v := range vs {
		if excess == 0 {
			break
		}
		if v.Digest == m.OllamaDigest {
			continue // what the name serves now is kept
		}
		if err := r.deleteVersion(ctx, v); err != nil {
			r.log.Warn("cannot delete old version; it is tried again at the next create", "model", v.Name, "err", err)
			continue
		}
		gone = append(gone, spec.CanonicalModelName(v.Name))
		excess--
	}
	r.forgetVersions(name, gone)
}

// deleteVersion deletes a kept version if it still holds the digest
// adapterd made; one changed by someone else is left, and forgotten.
func (r *Reconciler) deleteVersion(ctx context.Context, v Version) error {
	canon := spec.CanonicalModelName(v.Name)
	r.srv.mutate.Lock()
	defer r.srv.mutate.Unlock()
	cur, err := r.srv.current(ctx, canon)
	if err != nil {
		return err
	}
	if cur == nil {
		return nil
	}
	if cur.Digest != v.Digest {
		r.log.Warn("version changed since adapterd made it; not deleting", "model", v.Name)
		return nil
	}
	if err := r.srv.c.Delete(ctx, &api.DeleteRequest{Model: v.Name}); err != nil && !isNotFound(err) {
		return ollamaErr("delete", err)
	}
	r.srv.forget(canon)
	return nil
}

func (r *Reconciler) forgetVersions(name string, gone []string) {
	if len(gone) == 0 {
		return
	}
	r.store.Update(func(s *stateFile) bool {
		m, ok := s.Models[name]
		if !ok {
			return false
		}
		for _, g := range gone {
			m.Versions = slicesDeleteName(m.Versions, g)
		}
		s.Models[name] = m
		return true
	})
}

// retireVersions deletes (on_remove: delete) every kept version of m; it
// returns the first error, and forgets the versions that are gone.
func (r *Reconciler) retireVersions(ctx context.Context, m OwnedModel) error {
	name := spec.CanonicalModelName(m.Name)
	var gone []string
	var first error
	for _, v := range m.Versions {
		if err := r.deleteVersion(ctx, v); err != nil {
			if first == nil {
				first = err
			}
			continue
		}
		gone = append(gone, spec.CanonicalModelName(v.Name))
	}
	r.forgetVersions(name, gone)
	return first
}

// rollout returns key's rollout record.
func (s *Store) rollout(key string) Rollout {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st.Rollouts[key]
}

// setRollout changes key's rollout record through fn; an empty record is
// removed.
func (s *Store) setRollout(key string, fn func(*Rollout)) error {
	return s.Update(func(st *stateFile) bool {
		ro := st.Rollouts[key]
		before := ro
		fn(&ro)
		if ro == before {
			return false
		}
		if st.Rollouts == nil {
			st.Rollouts = map[string]Rollout{}
		}
		if ro.Rejected == nil && ro.Pin == nil {
			delete(st.Rollouts, key)
		} else {
			st.Rollouts[key] = ro
		}
		return true
	})
}

// ownedBy returns the model key owns under the name it claims now.
func (r *Reconciler) ownedBy(key string) (string, OwnedModel, bool) {
	r.claims.mu.Lock()
	claimed := r.claims.byKey[key]
	r.claims.mu.Unlock()
	var found OwnedModel
	n := 0
	for _, m := range r.store.Models() {
		if m.Key != key || m.RemovedAt != nil {
			continue
		}
		if name := spec.CanonicalModelName(m.Name); name == claimed {
			return name, m, true
		}
		found, n = m, n+1
	}
	if n != 1 {
		return "", OwnedModel{}, false
	}
	return spec.CanonicalModelName(found.Name), found, true
}

// Rollback puts a kept version of key's model back under its name in one
// copy, and pins the key there until its folder changes or Unpin. to names
// the version (its model name, its tag, or a prefix of its input digest);
// "" is the newest version that is not the model under the name now. It
// returns one line for the user.
func (r *Reconciler) Rollback(ctx context.Context, key, to string) (string, error) {
	name, m, ok := r.ownedBy(key)
	if !ok {
		return "", fmt.Errorf("%w: no model of adapter %s to roll back", status.ErrNotFound, spec.Quote(key))
	}
	st, seen := r.board.get(key)
	switch {
	case !seen:
		return "", fmt.Errorf("adapter %s has not been looked at since the daemon started; try again in a moment", spec.Quote(key))
	case st.State == status.Ingesting:
		return "", fmt.Errorf("adapter %s is being ingested; roll back once it is done", spec.Quote(key))
	}
	// With adapterd's other changes held off, the record is read again: a
	// create that finished meanwhile is what is rolled back from.
	r.srv.mutate.Lock()
	defer r.srv.mutate.Unlock()
	if m, ok = r.store.Model(name); !ok || m.Key != key {
		return "", fmt.Errorf("%w: no model of adapter %s to roll back", status.ErrNotFound, spec.Quote(key))
	}
	v, err := pickVersion(m, to)
	if err != nil {
		return "", fmt.Errorf("adapter %s: %w", spec.Quote(key), err)
	}
	cur, err := r.srv.current(ctx, name)
	if err != nil {
		return "", err
	}
	if cur == nil || !m.Owns(cur.Digest) {
		return "", fmt.Errorf("model %s is not the one adapterd made (changed or deleted outside adapterd); adapterd will not overwrite it", m.Name)
	}
	vc, err := r.srv.current(ctx, spec.CanonicalModelName(v.Name))
	if err != nil {
		return "", err
	}
	if vc == nil || vc.Digest != v.Digest {
		return "", fmt.Errorf("version %s was changed or deleted outside adapterd; pick another with --to", v.Name)
	}
	// The pin remembers the folder as it is now: the status digest, or
	// when none was shown, the input of the model being replaced.
	input := m.InputDigest
	if st.Digest != "" {
		input = st.Digest
	}
	// Ownership first, as for any create: after a crash right after the
	// copy, the version's digest under the name is still known as ours.
	if err := r.store.Update(func(s *stateFile) bool {
		mm := s.Models[name]
		mm.PendingDigest, mm.PendingInput, mm.PendingStrategy = v.Digest, v.Input, mm.Strategy
		s.Models[name] = mm
		return true
	}); err != nil {
		return "", err
	}
	if err := r.srv.c.Copy(ctx, &api.CopyRequest{Source: v.Name, Destination: m.Name}); err != nil {
		return "", ollamaErr("copy", fmt.Errorf("copying %s to %s: %w", v.Name, m.Name, err))
	}
	cur.Digest = v.Digest
	r.srv.patch(name, cur)
	now := time.Now().UTC()
	if err := r.store.Update(func(s *stateFile) bool {
		mm := s.Models[name]
		mm.OllamaDigest, mm.InputDigest, mm.Created = v.Digest, v.Input, now
		mm.PendingDigest, mm.PendingLayer, mm.PendingInput, mm.PendingStrategy = "", "", "", ""
		s.Models[name] = mm
		return true
	}); err != nil {
		return "", err
	}
	if err := r.store.setRollout(key, func(ro *Rollout) { ro.Pin = &Pin{Version: v.Name, Input: input, At: now} }); err != nil {
		return "", err
	}
	r.metrics.RolledBack(key)
	r.log.Info("rolled back", "key", key, "model", m.Name, "version", v.Name)
	r.ctl.Add(key)
	return fmt.Sprintf("%s now serves %s (made %s); pinned until the folder changes or `adapterd unpin %s`",
		m.Name, v.Name, v.Created.Format(time.RFC3339), key), nil
}

// pickVersion is the version to roll back to: the one to names, or the
// newest that is not under the name now.
func pickVersion(m OwnedModel, to string) (Version, error) {
	vs := append([]Version(nil), m.Versions...)
	sort.SliceStable(vs, func(a, b int) bool { return vs[a].Created.After(vs[b].Created) })
	for _, v := range vs {
		switch {
		case to == "" && v.Digest != m.OllamaDigest:
			return v, nil
		case to == "":
		case v.Name == to, spec.CanonicalModelName(v.Name) == spec.CanonicalModelName(to),
			strings.TrimPrefix(v.Name, v.Name[:strings.LastIndex(v.Name, ":")+1]) == to,
			len(to) >= 6 && strings.HasPrefix(strings.TrimPrefix(v.Input, "sha256:"), strings.TrimPrefix(to, "sha256:")):
			return v, nil
		}
	}
	if to == "" {
		return Version{}, fmt.Errorf("%w: no earlier version is kept to roll back to (keep_versions)", status.ErrNotFound)
	}
	names := make([]string, 0, len(vs))
	for _, v := range vs {
		names = append(names, v.Name)
	}
	return Version{}, fmt.Errorf("%w: no kept version %s; kept: %s", status.ErrNotFound, spec.Quote(to), strings.Join(names, ", "))
}

// Unpin lets key's folder make its model again.
func (r *Reconciler) Unpin(ctx context.Context, key string) (string, error) {
	if r.store.rollout(key).Pin == nil {
		return "", fmt.Errorf("%w: adapter %s is not pinned", status.ErrNotFound, spec.Quote(key))
	}
	if err := r.store.setRollout(key, func(ro *Rollout) { ro.Pin = nil }); err != nil {
		return "", err
	}
	r.log.Info("unpinned", "key", key)
	r.ctl.Add(key)
	return fmt.Sprintf("%s unpinned; its folder is made into a model again if it differs", key), nil
}

// versionsOf is what users see of key's kept versions.
func (r *Reconciler) versionsOf(key string) []status.Version {
	_, m, ok := r.ownedBy(key)
	if !ok || len(m.Versions) == 0 {
		return nil
	}
	out := make([]status.Version, 0, len(m.Versions))
	for _, v := range m.Versions {
		out = append(out, status.Version{Model: v.Name, Digest: v.Input, Created: v.Created, Current: v.Digest == m.OllamaDigest})
	}
	sort.SliceStable(out, func(a, b int) bool { return out[a].Created.Before(out[b].Created) })
	return out
}
