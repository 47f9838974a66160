// Package status defines the one status each adapter folder has, as users
// see it in .adapterd-status.json, GET /v1/adapters and `adapterd status`.
package status

import (
	"errors"
	"time"

	"github.com/adapterd/adapterd/internal/layout"
)

// State is the lifecycle state of one adapter folder.
type State string

const (
	Waiting   State = "waiting"   // settling, incomplete files, or no ready_file yet
	Invalid   State = "invalid"   // validation failed; waits for the files to change
	Ingesting State = "ingesting" // work in progress
	Ready     State = "ready"     // the model exists and matches the current files
	Failed    State = "failed"    // Ollama error; retried with backoff
	Conflict  State = "conflict"  // another folder, or a model adapterd does not own, holds the name
	Rejected  State = "rejected"  // the new model failed a check; the old one keeps the name until the folder changes
)

// States lists every state, for metrics that report zero counts too.
var States = []State{Waiting, Invalid, Ingesting, Ready, Failed, Conflict, Rejected}

// Status is one adapter's status. Field names are part of the product
// contract (shared/PRODUCT.md section 5).
type Status struct {
	Key      string    `json:"key"`
	State    State     `json:"state"`
	Model    string    `json:"model"`
	Base     string    `json:"base"`
	Strategy string    `json:"strategy"`
	Digest   string    `json:"digest"`
	Error    string    `json:"error"`
	Updated  time.Time `json:"updated"`
	// Progress is how far the current long step is, while State is
	// ingesting; absent otherwise. It is served by GET /v1/adapters (and
	// so adapterd status) only: the status file is written at state
	// changes, not for every megabyte.
	Progress *Progress `json:"progress,omitempty"`
	// Pinned is the version the key was rolled back to (adapterd
	// rollback): the folder is not made into a model again until it
	// changes or the key is unpinned. Absent when not pinned.
	Pinned string `json:"pinned,omitempty"`
	// Versions are the versions of the model kept to roll back to, oldest
	// first. Served by GET /v1/adapters (and so adapterd status) only.
	Versions []Version `json:"versions,omitempty"`
}

// Version is one kept version of a key's model.
type Version struct {
	Model   string    `json:"model"`   // the version's own model name, name:v-<12 hex>
	Digest  string    `json:"digest"`  // the input digest it was made from (the status digest then)
	Created time.Time `json:"created"` // when adapterd made it (UTC)
	Current bool      `json:"current"` // it is the model under the name now
}

// Progress is one long step of an ingest: its name, bytes done of bytes in
// all, and when it started, so a client can work out rate and time left.
type Progress struct {
	Step       string    `json:"step"`        // hash, upload, merge, upload merged model, create, verify
	BytesDone  int64     `json:"bytes_done"`  // bytes done in this step so far
	BytesTotal int64     `json:"bytes_total"` // bytes in all; 0 when the step has no byte count (create, verify)
	Started    time.Time `json:"started"`     // when this step started (UTC)
}

// ErrNotFound is a request about a key that has no model (rollback,
// unpin): the HTTP API answers it 404.
var ErrNotFound = errors.New("not found")

// FileName is the status file adapterd writes into each adapter folder.
const FileName = layout.StatusFile
