// Package status defines the one status each adapter folder has, as users
// see it in .adapterd-status.json, GET /v1/adapters and `adapterd status`.
package status

import (
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
)

// States lists every state, for metrics that report zero counts too.
var States = []State{Waiting, Invalid, Ingesting, Ready, Failed, Conflict}

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
}

// Progress is one long step of an ingest: its name, bytes done of bytes in
// all, and when it started, so a client can work out rate and time left.
type Progress struct {
	Step       string    `json:"step"`        // hash, upload, merge, upload merged model, create, verify
	BytesDone  int64     `json:"bytes_done"`  // bytes done in this step so far
	BytesTotal int64     `json:"bytes_total"` // bytes in all; 0 when the step has no byte count (create, verify)
	Started    time.Time `json:"started"`     // when this step started (UTC)
}

// FileName is the status file adapterd writes into each adapter folder.
const FileName = layout.StatusFile
