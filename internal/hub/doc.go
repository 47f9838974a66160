// Package hub downloads LoRA adapters from the Hugging Face Hub, or from any
// server that speaks its protocol (HF_ENDPOINT: mirrors, self-hosted hubs,
// NeMo Data Store's /v1/hf).
//
// It speaks the protocol the way huggingface_hub does, because that is the
// dialect every compatible server is tested against: a revision resolves to
// a commit first, so every later request names exact bytes; files are listed
// from the tree endpoint, page by page; each file is resolved with a HEAD
// that does not follow redirects, so the hub's own headers (X-Repo-Commit,
// X-Linked-Etag, X-Linked-Size) are read before a CDN answers for the
// bytes.
//
// The token goes to the hub's origin only (scheme, host and port). Large
// files redirect to a CDN on another host, and a bearer token sent there
// would leak to whoever runs it, so Authorization is dropped whenever a
// redirect changes the origin, and a move from https to http is refused
// while a token is set. An HF_ENDPOINT with userinfo is refused.
//
// Nothing a server sends can hold the client or grow its memory without
// end: every request is cut when idle (internal/transfer), a tree listing
// is decoded entry by entry under caps on entries, bytes and path length
// keeping only the names an adapter folder uses, and a file larger than
// MaxFileSize is refused from its announced size.
//
// Nothing is trusted until checked: each file streams into a temp file while
// it is hashed (sha256 for LFS files, whose ETag is that hash; the git blob
// sha1 for small files), with bounded memory, and a size or hash mismatch
// removes the temp file. A connection that drops resumes with Range, and a
// server that ignores Range starts the file over. Only the adapter's own
// files are fetched (Select); a repo that holds only full model weights is
// refused, and a GGUF is read from its header first, because GGUF repos
// mostly hold full models in several quantizations.
//
// The Hugging Face cache (HF_HUB_CACHE; the daemon's own under state_dir)
// is shared with Python tools both ways, in huggingface_hub's layout:
// blobs/<etag>, snapshots/<commit>/<path> as relative links to them, and
// refs/<branch or tag> holding the commit. A file already there is copied
// from it after the same checks; a download lands there first
// (blobs/<etag>.incomplete under huggingface_hub's lock file, resumable by
// either client, renamed only once its hash matched and it was synced), and
// the caller's folder gets a plain copy, never a link. Writes go through an
// os.Root, so a link planted in a shared cache never leads one outside it,
// and a cache that cannot be written is skipped with a log line: it is only
// ever a shortcut, never a reason for a fetch to fail.
package hub
