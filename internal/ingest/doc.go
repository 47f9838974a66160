// Package ingest turns validated adapter folders into Ollama models: it talks
// to the Ollama API (blobs, create, show, delete), keeps the persistent state
// of what adapterd owns, and runs the level-triggered reconcile per key.
package ingest
