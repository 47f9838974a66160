package layout

import "testing"

func TestIsAdapterKey(t *testing.T) {
	for _, tc := range []struct {
		name string
		want bool
	}{
		{"foo", true},
		{"support-bot", true},
		{"Foo_Bar.v2", true},
		{"foo.partial", true},
		{"", false},
		{".", false},
		{"..", false},
		{".foo.partial", false},
		{".adapterd", false},
		{"_archive", false},
		{"_", false},
		{"a/b", false},
		{"a\\b", false},
		{"new\nline", false},
		{"nul\x00", false},
		{"esc\x1b[31m", false},
		{"del\x7f", false},
		{"c1\u0085", false},
		{"bad\xffutf8", false},
		{"ünïcode", true},
	} {
		if got := IsAdapterKey(tc.name); got != tc.want {
			t.Errorf("IsAdapterKey(%q) = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestIsRelevantFile(t *testing.T) {
	for _, tc := range []struct {
		name, ready string
		want        bool
	}{
		{"adapter.yaml", "", true},
		{"adapter.yml", "", true},
		{"adapter_config.json", "", true},
		{"adapter_model.safetensors", "", true},
		{"lora.gguf", "", true},
		{"LoRA-F16.GGUF", "", true},
		{"READY", "READY", true},
		{"READY", "", false},
		{"ready", "READY", false},
		{".adapterd-status.json", "", false},
		{".adapterd-status.json", ".adapterd-status.json", false}, // never, or we loop
		{".adapterd-status.json.tmp", "", false},
		{"README.md", "", false},
		{"tokenizer.json", "", false},
		{"tokenizer_config.json", "", false},
		{"special_tokens_map.json", "", false},
		{"training_args.bin", "", false},
		{"adapter_model.bin", "", false},
		{"lora.gguf.part", "", false},
		{"adapter.yaml~", "", false},
		{"checkpoint-500", "", false},
		{"", "", false},
		{".hidden.gguf", "", false}, // detection passes it by, so fetch and mirror do too
		{"lo\nra.gguf", "", false},
		{"lora\x00.gguf", "", false},
	} {
		if got := IsRelevantFile(tc.name, tc.ready); got != tc.want {
			t.Errorf("IsRelevantFile(%q, %q) = %v, want %v", tc.name, tc.ready, got, tc.want)
		}
	}
}
