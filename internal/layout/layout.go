// Package layout holds the drop directory's naming rules in one place: which
// entries are adapter keys, which files inside a folder matter, and the names
// of the files adapterd reads and writes there. The watcher, the reconciler,
// the adapter reader, the bench and the tests all ask here, so a rule changes
// in one file.
package layout

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// File names inside an adapter folder.
const (
	SidecarYAML = "adapter.yaml"
	SidecarYML  = "adapter.yml"
	PEFTConfig  = "adapter_config.json"
	PEFTWeights = "adapter_model.safetensors"
	PEFTPickle  = "adapter_model.bin"
	GGUFSuffix  = ".gguf"
	StatusFile  = ".adapterd-status.json"
	// SourceFile records where a fetched folder came from (hub repo,
	// revision asked for, commit resolved). It never triggers work.
	SourceFile = ".adapterd-source.json"
)

// LegacyStateDir is where state_dir used to default to, inside the drop
// directory. Anyone who can write the drop dir could replace it (with a
// link to the drop dir itself, or a forged state.json), so adapterd now
// refuses a state_dir in the drop dir and migrates this folder once
// (dropdir.MigrateState).
const LegacyStateDir = ".adapterd"

// Sidecars lists the sidecar names in the order they are looked for.
var Sidecars = []string{SidecarYAML, SidecarYML}

// ValidName is the one name rule for every name adapterd reads from or
// writes to the drop directory, whoever offers it (a folder on disk, an S3
// listing, a hub repo): one path part (not empty, not "." or "..", no '/'
// or '\\'), valid UTF-8, and no control character. A newline or a NUL in a
// name would split a log line or a status line in two, and such a file is
// neither fetched, nor mirrored, nor read.
func ValidName(name string) bool {
	if name == "" || name == "." || name == ".." || !utf8.ValidString(name) || strings.ContainsAny(name, "/\\") {
		return false
	}
	return strings.IndexFunc(name, unicode.IsControl) < 0
}

// IsAdapterKey reports whether name, an entry directly inside the drop
// directory, is an adapter key: a ValidName that does not start with "." or
// "_". Those are ignored (they support atomic publishing: write
// drop/.foo.partial/, then rename it to drop/foo).
func IsAdapterKey(name string) bool {
	return ValidName(name) && name[0] != '.' && name[0] != '_'
}

// IsRelevantFile reports whether a top-level file named name inside an
// adapter folder matters for ingestion: the sidecar, the PEFT pair, any
// *.gguf (the suffix is matched case-insensitively), and readyFile when it is
// not empty. Everything else is irrelevant, in particular the status file
// (even if readyFile names it: writing it must never trigger work, or it
// would loop), README.md, tokenizer files and training_args.bin.
func IsRelevantFile(name, readyFile string) bool {
	if !ValidName(name) {
		return false
	}
	switch name {
	case "", StatusFile, SourceFile:
		return false
	case SidecarYAML, SidecarYML, PEFTConfig, PEFTWeights:
		return true
	}
	if readyFile != "" && name == readyFile {
		return true
	}
	return IsGGUF(name)
}

// IsAdapterFile reports whether name is one of the files an adapter is
// made of: the PEFT pair or a GGUF.
func IsAdapterFile(name string) bool {
	return name == PEFTConfig || name == PEFTWeights || IsGGUF(name)
}

// IsGGUF reports whether name is a GGUF file adapterd takes: a ValidName
// with the GGUF suffix in any case (LORA.GGUF too), and not hidden. A name
// starting with "." is how copy tools and atomic writers stage data, the
// same convention that hides ".foo" folders, so fetch, mirror and
// detection all pass it by alike.
func IsGGUF(name string) bool {
	return ValidName(name) && name[0] != '.' && strings.HasSuffix(strings.ToLower(name), GGUFSuffix)
}

// KeyFromRepo is the folder name a hub repo gets in the drop directory when
// no key is given: the repo's last path part, with anything but letters,
// digits, '.', '_' and '-' made '-', and without the leading '.' or '_'
// that would make the daemon ignore it. ok is false when nothing usable is
// left.
func KeyFromRepo(repo string) (key string, ok bool) {
	name := repo[strings.LastIndex(repo, "/")+1:]
	k := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-' {
			return r
		}
		return '-'
	}, name)
	k = strings.TrimLeft(k, "._")
	return k, IsAdapterKey(k)
}
