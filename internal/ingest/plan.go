package ingest

import (
	"fmt"
	"time"

	"github.com/ollama/ollama/api"

	"github.com/adapterd/adapterd/internal/lora"
	"github.com/adapterd/adapterd/internal/spec"
	"github.com/adapterd/adapterd/internal/status"
)

// actionKind is the one thing a reconcile does for a key.
type actionKind int

const (
	actNone     actionKind = iota // nothing to do or show: removals are held
	actWait                       // settling, ready_file missing, incomplete files
	actInvalid                    // the folder is wrong; wait for it to change
	actConflict                   // the model name is not ours to write
	actReady                      // the model is up to date
	actCreate                     // create (native or merge) under the name
	actRetire                     // the folder is gone: retire its models
	actAdopt                      // bring the ownership record up to date, then Then
	actFailed                     // cannot go on now, not the folder's fault: retry with backoff
	actRejected                   // this input's model failed a check: wait for the folder to change
)

var actionNames = [...]string{"none", "wait", "invalid", "conflict", "ready", "create", "retire", "adopt", "failed", "rejected"}

func (k actionKind) String() string { return actionNames[k] }

// action is plan's decision: what to do, what the user sees, and when to
// look again.
type action struct {
	Kind     actionKind
	Status   status.Status
	After    time.Duration // look again after this; 0: only on a change
	Prepare  bool          // hash and upload while the folder settles
	Requeue  []string      // other keys whose outcome this one changes
	Retire   []OwnedModel  // retired beside the main action
	Decision *Decision     // actCreate: the strategy and the request
	Adopt    *OwnedModel   // actAdopt: the record to write
	Then     *action       // actAdopt: what to do once it is written
	Unpin    bool          // the folder changed since its rollback: the pin is over
}

// plan decides what to do about one key from what was observed. It is pure:
// no I/O, no clock, no randomness. Every state of the contract's status and
// behaviour sections is a row of its table test.
func plan(o *observed) action {
	st := o.status()
	switch {
	case o.FolderGone && o.RemovalHeld != "":
		return action{Kind: actNone}
	case o.FolderGone:
		return action{Kind: actRetire, Retire: o.Retire}
	case o.Symlink:
		return invalid(st, o.Dir+": adapter folder is a symlink; move the folder itself into drop_dir")
	case o.ReadyMissing:
		st.State, st.Error = status.Waiting, fmt.Sprintf("%s: waiting for %s", o.Dir, o.ReadyFile)
		return action{Kind: actWait, Status: st}
	case o.Quiet < o.Settle:
		st.State = status.Waiting
		return action{Kind: actWait, Status: st, After: o.Settle - max(o.Quiet, 0), Prepare: true}
	case o.LoadErr != nil:
		if lora.IsIncomplete(o.LoadErr) && !o.SeenIncomplete {
			st.State, st.Error = status.Waiting, spec.OneLine(o.LoadErr.Error())
			return action{Kind: actWait, Status: st, After: max(o.Settle, time.Second)}
		}
		return invalid(st, o.LoadErr.Error())
	case len(o.Claimants) > 0:
		return claimConflict(o, st, o.Claimants)
	case o.Changed:
		st.State = status.Waiting
		return action{Kind: actWait, Status: st, After: max(o.Settle, 100*time.Millisecond), Retire: o.Retire}
	}
	d := decide(o.Files, o.Server)
	st.Strategy = string(d.Strategy)
	var act action
	switch {
	case d.BaseMissing != "":
		st.State, st.Error = status.Failed, d.BaseMissing
		act = action{Kind: actFailed, Status: st}
	case len(d.Refusals) > 0:
		act = invalid(st, d.Refusals[0].Error())
	default:
		st.Digest = d.Input
		act = planModel(o, &d, st)
	}
	act.Retire = o.Retire
	return act
}

// planModel decides for a valid, settled, unclaimed folder, from the model
// under its name and adapterd's record of it.
func planModel(o *observed, d *Decision, st status.Status) action {
	m, e := o.Owned, o.Existing
	file := o.Folder.SidecarFile
	model := o.Folder.Resolved.Model
	switch {
	case e != nil && m == nil:
		return conflict(st, fmt.Sprintf("%s: model %s already exists in Ollama and adapterd did not create it; pick another model: name or remove that model", file, model))
	case e != nil && !m.Owns(e.Digest) && !o.PendingLanded:
		return conflict(st, fmt.Sprintf("%s: model %s was changed outside adapterd since adapterd created it; adapterd will not overwrite it: pick another model: name or remove that model", file, model))
	case m != nil && needsAdopt(*m, o.Key, o.DropDir):
		a := adopted(*m, o.Key, o.DropDir, e, o.PendingLanded)
		next := *o
		next.Owned, next.PendingLanded = &a, false
		then := planModel(&next, d, st)
		return action{Kind: actAdopt, Status: then.Status, Adopt: &a, Then: &then}
	}
	pin, rejected := o.Rollout.Pin, o.Rollout.Rejected
	switch {
	case pin != nil && pin.Input == d.Input && m != nil && e != nil && m.Owns(e.Digest):
		// Rolled back: the name serves the pinned version, not the folder.
		st.State, st.Strategy, st.Pinned = status.Ready, m.Strategy, pin.Version
		return action{Kind: actReady, Status: st}
	case upToDate(o, d.Input):
		st.State, st.Strategy = status.Ready, m.Strategy
		return action{Kind: actReady, Status: st, Unpin: pin != nil}
	case rejected != nil && rejected.Input == d.Input:
		st.State, st.Error = status.Rejected, rejected.Reason
		return action{Kind: actRejected, Status: st}
	case len(o.LateClaimants) > 0:
		return claimConflict(o, st, o.LateClaimants)
	}
	st.State = status.Ingesting
	return action{Kind: actCreate, Status: st, Decision: d, Unpin: pin != nil}
}

// needsAdopt reports whether m must be rewritten before it can be trusted:
// a create that may or may not have landed, a folder that was renamed, or a
// folder that came back within its grace period.
func needsAdopt(m OwnedModel, key, dropDir string) bool {
	return m.PendingDigest != "" || m.PendingLayer != "" || m.Key != key || m.RemovedAt != nil ||
		(m.DropDir != "" && m.DropDir != dropDir)
}

// adopted is m brought up to date: a pending create that landed becomes
// current, one that did not is dropped, and the record belongs to key.
func adopted(m OwnedModel, key, dropDir string, e *api.ListModelResponse, landed bool) OwnedModel {
	if landed && e != nil {
		m.OllamaDigest, m.InputDigest, m.Strategy = e.Digest, m.PendingInput, m.PendingStrategy
	}
	m.PendingDigest, m.PendingLayer, m.PendingInput, m.PendingStrategy = "", "", "", ""
	m.Key, m.DropDir, m.RemovedAt = key, dropDir, nil
	return m
}

func invalid(st status.Status, msg string) action {
	st.State, st.Error = status.Invalid, spec.OneLine(msg)
	return action{Kind: actInvalid, Status: st}
}

func conflict(st status.Status, msg string) action {
	st.State, st.Error = status.Conflict, msg
	return action{Kind: actConflict, Status: st}
}

func claimConflict(o *observed, st status.Status, others []string) action {
	a := conflict(st, fmt.Sprintf("%s: model %s is also claimed by folder(s) %v; give each folder its own model: name",
		o.Folder.SidecarFile, o.Folder.Resolved.Model, others))
	a.Requeue = others
	return a
}
