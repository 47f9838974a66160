package ingest

import (
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ollama/ollama/api"
)

func TestVersionNameReplacesTheTag(t *testing.T) {
	in := "sha256:4f1c0a9e2b7d55aa"
	for _, tc := range []struct{ model, want string }{
		{"support-bot", "support-bot:v-4f1c0a9e2b7d"},
		{"support-bot:v3", "support-bot:v-4f1c0a9e2b7d"},
		{"team/bot:prod", "team/bot:v-4f1c0a9e2b7d"},
		{"localhost:5000/team/bot", "localhost:5000/team/bot:v-4f1c0a9e2b7d"},
	} {
		if got := versionName(tc.model, in); got != tc.want {
			t.Errorf("versionName(%q) = %q, want %q", tc.model, got, tc.want)
		}
	}
}

func TestPickVersion(t *testing.T) {
	t0 := time.Unix(1000, 0)
	m := OwnedModel{OllamaDigest: "d3", Versions: []Version{
		{Name: "m:v-aaaaaaaaaaaa", Digest: "d1", Input: "sha256:aaaaaaaaaaaa11", Created: t0},
		{Name: "m:v-bbbbbbbbbbbb", Digest: "d2", Input: "sha256:bbbbbbbbbbbb22", Created: t0.Add(time.Hour)},
		{Name: "m:v-cccccccccccc", Digest: "d3", Input: "sha256:cccccccccccc33", Created: t0.Add(2 * time.Hour)},
	}}
	for _, tc := range []struct{ to, want, err string }{
		{"", "m:v-bbbbbbbbbbbb", ""}, // the newest that is not under the name
		{"m:v-aaaaaaaaaaaa", "m:v-aaaaaaaaaaaa", ""},
		{"v-aaaaaaaaaaaa", "m:v-aaaaaaaaaaaa", ""},
		{"aaaaaa", "m:v-aaaaaaaaaaaa", ""},
		{"sha256:bbbbbbbb", "m:v-bbbbbbbbbbbb", ""},
		{"aaa", "", "no kept version"}, // too short to be a digest prefix
		{"m:v-zzz", "", "kept: m:v-cccccccccccc, m:v-bbbbbbbbbbbb, m:v-aaaaaaaaaaaa"},
	} {
		v, err := pickVersion(m, tc.to)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("pickVersion(%q): %v, want an error with %q", tc.to, err, tc.err)
			}
			continue
		}
		if err != nil || v.Name != tc.want {
			t.Errorf("pickVersion(%q) = %q, %v; want %q", tc.to, v.Name, err, tc.want)
		}
	}
	if _, err := pickVersion(OwnedModel{OllamaDigest: "d", Versions: []Version{{Name: "m:v-1", Digest: "d"}}}, ""); err == nil ||
		!strings.Contains(err.Error(), "no earlier version") {
		t.Errorf("only the current version kept: %v", err)
	}
}

func TestVerifyTellsOllamaDownFromAModelThatCannotRun(t *testing.T) {
	for _, tc := range []struct {
		err  error
		down bool
	}{
		{&url.Error{Op: "Post", URL: "http://127.0.0.1:1/api/generate", Err: syscall.ECONNREFUSED}, true},
		{fmt.Errorf("generate: %w", io.ErrUnexpectedEOF), true},
		{api.StatusError{StatusCode: 500, ErrorMessage: "loras are not yet implemented"}, false},
		{errors.New("model failed to load"), false}, // an error line in Ollama's answer
	} {
		if got := unanswered(tc.err); got != tc.down {
			t.Errorf("unanswered(%v) = %v, want %v", tc.err, got, tc.down)
		}
	}
}
