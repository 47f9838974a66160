package spec

import (
	"strings"
	"testing"
)

func TestValidateModelName(t *testing.T) {
	tests := []struct {
		name string
		want string // "" = valid; otherwise a fragment of the error
	}{
		{"support-bot", ""},
		{"support-bot:v3", ""},
		{"Support_Bot.v2:Q4_K_M", ""},
		{"team/support-bot:v3", ""},
		{"registry.example.com/team/bot:1", ""},
		{"localhost:5000/team/bot", ""},
		{"localhost:5000/team/bot:v1", ""},
		{"llama3.2:3b", ""},
		{"a", ""},
		{"7b", ""},
		{strings.Repeat("m", 80), ""},
		{strings.Repeat("m", 80) + ":" + strings.Repeat("t", 80), ""},
		{strings.Repeat("h", 350) + "/ns/m", ""},

		{"", "empty"},
		{"Support Bot", "model part may contain only"},
		{"bot:", "empty tag part"},
		{":v1", "empty model part"},
		{"/bot", "empty namespace part"},
		{"team/", "empty model part"},
		{"h//bot", "empty namespace part"},
		{"-bot", "must start with a letter or digit"},
		{"_bot", "must start with a letter or digit"},
		{".bot", "must start with a letter or digit"},
		{"bot:-v1", "tag part must start with"},
		{"bot:v1:v2", "model part may contain only"},
		{"team.x/bot", "namespace part may contain only"},
		{"a/b/c/d", "host part may contain only"},
		{"bot@sha256:abc", "digests are not allowed"},
		{"http://host/ns/bot", "URL scheme"},
		{"bot/x:y/z", "may contain only"},
		{"bötchen", "not 'ö'"},
		{"bot\n", `not '\n'`},
		{"bot\xff", "invalid UTF-8"},
		{strings.Repeat("m", 81), "limit is 80"},
		{"m:" + strings.Repeat("t", 81), "tag part is 81 characters long"},
		{strings.Repeat("n", 81) + "/m", "namespace part is 81"},
		{strings.Repeat("h", 351) + "/ns/m", "limit is 350"},
	}
	for _, tt := range tests {
		err := ValidateModelName(tt.name)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%q: want valid, got %v", tt.name, err)
		case tt.want != "" && err == nil:
			t.Errorf("%q: want an error containing %q, got valid", tt.name, tt.want)
		case err != nil && !strings.Contains(err.Error(), tt.want):
			t.Errorf("%q: error %q does not contain %q", tt.name, err, tt.want)
		case err != nil && strings.ContainsAny(err.Error(), "\r\n"):
			t.Errorf("%q: error is not one line: %q", tt.name, err)
		}
	}
}

func TestValidateBaseName_AcceptsWhatOllamaAccepts(t *testing.T) {
	for _, name := range []string{"_private", "hf.co/bartowski/Llama-3.2-3B-Instruct-GGUF:Q4_K_M", "llama3.2:3b", "ns/_m:_t"} {
		if err := validateBaseName(name); err != nil {
			t.Errorf("%q: %v", name, err)
		}
	}
}

func TestDeriveModelName(t *testing.T) {
	tests := []struct {
		key, want string
	}{
		{"support-bot", "support-bot"},
		{"Support_Bot v3", "support_bot-v3"},
		{"Support-Bot.V2", "support-bot.v2"},
		{"my adapter (final)", "my-adapter--final-"},
		{"foo:v2", "foo-v2"},
		{"a/b", "a-b"},
		{"ÄÖ", "ao"},
		{"Café", "cafe"},
		{"Cafe\u0301", "cafe"}, // decomposed, as macOS stores it
		{"Straße", "strasse"},
		{"Łódź", "lodz"},
		{"日本-bot", "bot"},
		{"bot-日本", "bot---"},
		{"-leading", "leading"},
		{"123", "123"},
		{strings.Repeat("x", 100), strings.Repeat("x", 80)},
		{"---", ""},
		{"", ""},
		{"日本語", ""},
	}
	for _, tt := range tests {
		got := DeriveModelName(tt.key)
		if got != tt.want {
			t.Errorf("DeriveModelName(%q) = %q, want %q", tt.key, got, tt.want)
		}
		if got != "" {
			if err := ValidateModelName(got); err != nil {
				t.Errorf("DeriveModelName(%q) = %q, which is invalid: %v", tt.key, got, err)
			}
		}
	}
}

func TestCanonicalModelName(t *testing.T) {
	tests := []struct {
		name, want string
	}{
		{"foo", "foo:latest"},
		{"Foo", "foo:latest"},
		{"foo:V3", "foo:v3"},
		{"foo:latest", "foo:latest"},
		{"library/foo", "foo:latest"},
		{"registry.ollama.ai/library/foo:1", "foo:1"},
		{"Registry.Ollama.AI/team/foo", "team/foo:latest"},
		{"team/Foo", "team/foo:latest"},
		{"localhost:5000/team/foo", "localhost:5000/team/foo:latest"},
		{"example.com/library/foo", "example.com/library/foo:latest"},
	}
	for _, tt := range tests {
		if got := CanonicalModelName(tt.name); got != tt.want {
			t.Errorf("CanonicalModelName(%q) = %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestCanonicalModelName_SameForNamesOllamaConsidersEqual(t *testing.T) {
	groups := [][]string{
		{"support-bot", "Support-Bot", "support-bot:latest", "SUPPORT-BOT:LATEST", "library/support-bot", "registry.ollama.ai/library/support-bot:latest"},
	}
	for _, g := range groups {
		for _, n := range g[1:] {
			if CanonicalModelName(n) != CanonicalModelName(g[0]) {
				t.Errorf("%q and %q differ: %q vs %q", n, g[0], CanonicalModelName(n), CanonicalModelName(g[0]))
			}
		}
	}
}

func TestModelPath(t *testing.T) {
	for _, tc := range []struct{ name, want string }{
		{"bot", "registry.ollama.ai/library/bot/latest"},
		{"bot:v3", "registry.ollama.ai/library/bot/v3"},
		{"team/bot:v3", "registry.ollama.ai/team/bot/v3"},
		{"hf.co/org/bot:q4", "hf.co/org/bot/q4"},
	} {
		h, ns, m, tag := ModelPath(tc.name)
		if got := h + "/" + ns + "/" + m + "/" + tag; got != tc.want {
			t.Errorf("ModelPath(%q) = %s, want %s", tc.name, got, tc.want)
		}
	}
}
