package watch

import (
	"path/filepath"
	"strings"
)

// statusFileName is the status file adapterd writes into each adapter folder.
// It must never trigger work, or writing it would loop forever.
const statusFileName = ".adapterd-status.json"

// IsAdapterKey reports whether name, an entry directly inside the drop
// directory, is an adapter key. Names starting with "." or "_" are ignored
// (they support atomic publishing: write drop/.foo.partial/, then rename it to
// drop/foo), and so is the empty name and anything containing a path
// separator.
func IsAdapterKey(name string) bool {
	if name == "" || name[0] == '.' || name[0] == '_' {
		return false
	}
	return !strings.ContainsAny(name, "/"+string(filepath.Separator))
}

// IsRelevantFile reports whether a top-level file named name inside an
// adapter folder matters for ingestion: adapter.yaml, adapter.yml,
// adapter_config.json, adapter_model.safetensors, any *.gguf (the suffix is
// matched case-insensitively), and readyFile when it is not empty.
// Everything else is irrelevant, in particular .adapterd-status.json (even if
// readyFile names it), README.md, tokenizer files and training_args.bin.
func IsRelevantFile(name, readyFile string) bool {
	switch name {
	case "", statusFileName:
		return false
	case "adapter.yaml", "adapter.yml", "adapter_config.json", "adapter_model.safetensors":
		return true
	}
	if readyFile != "" && name == readyFile {
		return true
	}
	return strings.HasSuffix(strings.ToLower(name), ".gguf")
}
