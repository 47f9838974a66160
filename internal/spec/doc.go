// Package spec defines what users write: the daemon config, the per-folder
// sidecar, and the rules for model names. It turns YAML into checked Go
// values and is pure: nothing here touches the file system except
// [LoadConfig], which only reads the config file.
//
// Decoding is strict because these files are written by hand and by
// training jobs, and a typo that is silently ignored (say "modle:") would
// publish a model under the wrong name. Every error is an [*Error]: one line
// that names the file, the line when there is one, and what to change, so it
// can go straight into a status file, a log line or a terminal.
//
// A sidecar becomes what an ingest uses in two steps: [ParseSidecar] checks
// one file on its own, then [Resolve] applies the config defaults and fills
// in the model name. [Resolved] is the input that the digest covers.
package spec
