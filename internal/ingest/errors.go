package ingest

import (
	"errors"
	"fmt"
	"strings"

	"github.com/ollama/ollama/api"

	"github.com/adapterd/adapterd/internal/lora"
	"github.com/adapterd/adapterd/internal/spec"
)

// Every error a reconcile meets is sorted here, and only here, into what the
// user sees and whether adapterd tries again:
//
//   - terminal: the inputs are wrong (bad files, a base that cannot take the
//     adapter, a request Ollama refuses the same way every time). The folder
//     is invalid, with the message, until its files change.
//   - incomplete: files still being written. The folder is waiting.
//   - conflict: the model name belongs to someone else. Not retried.
//   - rejected: a new model failed one of its checks. The folder is
//     rejected, the old model keeps the name, until the folder changes.
//   - transient: anything else (Ollama down, a timeout, a 5xx that is not a
//     known refusal). The folder is failed and retried with backoff.
type errClass int

const (
	transient errClass = iota
	terminal
	incomplete
	conflicted
	rejected // a new model failed a check: the folder is rejected until it changes
)

// terminalError marks an error that retrying with the same inputs cannot fix.
type terminalError struct{ err error }

func (e *terminalError) Error() string { return e.err.Error() }
func (e *terminalError) Unwrap() error { return e.err }

func terminalf(format string, args ...any) error {
	return &terminalError{fmt.Errorf(format, args...)}
}

// conflictError is a model name that adapterd may not write.
type conflictError struct{ msg string }

func (e *conflictError) Error() string { return e.msg }

// baseMissingError is a base model that is not in Ollama: transient, since
// a pull fixes it without the folder changing.
type baseMissingError struct{ msg string }

func (e *baseMissingError) Error() string { return e.msg }

// ollamaError records which Ollama call failed, for the error metric.
type ollamaError struct {
	op  string
	err error
}

func (e *ollamaError) Error() string { return e.err.Error() }
func (e *ollamaError) Unwrap() error { return e.err }

func ollamaErr(op string, err error) error {
	if err == nil {
		return nil
	}
	return &ollamaError{op: op, err: err}
}

// errAdaptersRemoved is the 400 that Ollama ≥ 0.34 answers to any create
// with `adapters`. It is not terminal: the server's capabilities are
// re-read and `auto` then merges.
const errAdaptersRemoved = "LoRA adapters are no longer supported"

// knownRefusals are Ollama's answers to a create that depend only on the
// request. Ollama's non-streaming create answers most errors with status 500,
// so for these the text is all there is. Each entry is provoked on the
// server it names by TestKnownRefusalsOnRealServers.
var knownRefusals = []struct {
	text    string // a fragment of Ollama's message, lower case
	version string // where it was seen
}{
	{"template error", "0.24.0"},                                 // TEMPLATE that does not parse
	{"quantization is only supported for", "0.24.0"},             // quantize on a GGUF that is not F16/BF16/F32
	{"quantization is only supported for safetensors", "0.34.4"}, // quantize on any GGUF import
	{"invalid model name", "0.24.0"},                             // a name Ollama rejects
}

// isKnownRefusal reports whether err carries one of knownRefusals.
func isKnownRefusal(err error) bool {
	msg := strings.ToLower(err.Error())
	for _, k := range knownRefusals {
		if strings.Contains(msg, k.text) {
			return true
		}
	}
	return false
}

func isAdaptersRemoved(err error) bool {
	return err != nil && strings.Contains(err.Error(), errAdaptersRemoved)
}

// classify sorts err; see the comment at errClass.
func classify(err error) errClass {
	var (
		te *terminalError
		ce *conflictError
		se *spec.Error
		st api.StatusError
	)
	var rj *rejectedError
	switch {
	case errors.As(err, &rj):
		return rejected
	case errors.As(err, &ce):
		return conflicted
	case lora.IsIncomplete(err):
		return incomplete
	case errors.As(err, &te), errors.As(err, &se):
		return terminal
	case isAdaptersRemoved(err):
		return transient
	case isKnownRefusal(err):
		return terminal
	case errors.As(err, &st) && st.StatusCode == 400:
		// A 400 is Ollama judging the request itself.
		return terminal
	}
	return transient
}

// isNotFound reports whether an API error is Ollama's 404.
func isNotFound(err error) bool {
	var se api.StatusError
	if errors.As(err, &se) {
		return se.StatusCode == 404
	}
	return err != nil && strings.Contains(err.Error(), "not found")
}
