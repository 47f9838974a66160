package testfixture_test

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ollama/ollama/api"

	"github.com/adapterd/adapterd/internal/gguf"
	"github.com/adapterd/adapterd/internal/ollamatest"
	"github.com/adapterd/adapterd/internal/testfixture"
)

// The byte-level vocabulary holds the 256 byte symbols first (GPT-2's
// bytes_to_unicode order), one token per merge, and its specials last; every
// merge joins two tokens that exist into one that exists.
func TestBPEVocabularyIsConsistent(t *testing.T) {
	for _, b := range []testfixture.Base{testfixture.TinyLlama3(), testfixture.TinyQwen3()} {
		path := filepath.Join(t.TempDir(), "b.gguf")
		if err := testfixture.WriteArchGGUF(b, path); err != nil {
			t.Fatal(err)
		}
		f, err := gguf.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		tokens := kvStrings(f, "tokenizer.ggml.tokens")
		merges := kvStrings(f, "tokenizer.ggml.merges")
		if f.String("tokenizer.ggml.model") != "gpt2" || f.String("tokenizer.ggml.pre") != b.Tokenizer {
			t.Errorf("%s: model %q pre %q", b.Tokenizer, f.String("tokenizer.ggml.model"), f.String("tokenizer.ggml.pre"))
		}
		sym, _ := testfixture.ByteSymbols()
		if tokens[0] != "!" || !slices.Contains(tokens[:256], sym[' ']) || sym[' '] != "Ġ" || sym['\n'] != "Ċ" {
			t.Errorf("%s: byte symbols wrong: first %q, space %q", b.Tokenizer, tokens[0], sym[' '])
		}
		if len(merges) < 40 {
			t.Errorf("%s: only %d merges", b.Tokenizer, len(merges))
		}
		ids := map[string]bool{}
		for _, tk := range tokens {
			if ids[tk] {
				t.Errorf("%s: token %q twice", b.Tokenizer, tk)
			}
			ids[tk] = true
		}
		for _, m := range merges {
			l, r, ok := strings.Cut(m, " ")
			if !ok || !ids[l] || !ids[r] || !ids[l+r] {
				t.Errorf("%s: merge %q joins tokens the vocabulary lacks", b.Tokenizer, m)
			}
		}
		for _, w := range []string{"Ġthe", "Ġcat", "hello", "Ġworld"} {
			if !ids[w] {
				t.Errorf("%s: no single token for %q", b.Tokenizer, w)
			}
		}
		eos, _ := f.Uint("tokenizer.ggml.eos_token_id")
		want := map[string]string{testfixture.TokenizerLlama3: "<|eot_id|>", testfixture.TokenizerQwen2: "<|im_end|>"}[b.Tokenizer]
		if tokens[eos] != want {
			t.Errorf("%s: eos is %q, want %q", b.Tokenizer, tokens[eos], want)
		}
		_, out := f.Tensor("output.weight")
		if out == b.Tied {
			t.Errorf("%s: output.weight present %v, tied %v", b.Arch, out, b.Tied)
		}
	}
}

func kvStrings(f *gguf.File, key string) []string {
	for _, kv := range f.KV {
		if kv.Key == key {
			v, _ := kv.Value.([]string)
			return v
		}
	}
	return nil
}

// Every new fixture base loads on Ollama v0.24.0 on the engine its real
// counterpart runs on, tokenizes through its own vocabulary, and generates
// deterministically, without just echoing the prompt's last token.
func TestArchBasesRunOnOllama024(t *testing.T) {
	s := archServer(t, ollamatest.V024)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for _, c := range []struct {
		name     string
		b        testfixture.Base
		goEngine bool
	}{
		{"llama3", testfixture.TinyLlama3(), false},
		{"qwen3", testfixture.TinyQwen3(), true},
		{"mistral", testfixture.TinyMistral(), false},
		{"phi3", testfixture.TinyPhi3(), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "base.gguf")
			if err := testfixture.WriteArchGGUF(c.b, path); err != nil {
				t.Fatal(err)
			}
			model := "arch-" + c.name
			if err := s.ImportGGUF(ctx, model, path); err != nil {
				t.Fatal(err)
			}
			show, err := s.Client.Show(ctx, &api.ShowRequest{Model: model})
			if err != nil {
				t.Fatal(err)
			}
			if arch := show.ModelInfo["general.architecture"]; arch != c.b.Arch {
				t.Errorf("architecture %v, want %s", arch, c.b.Arch)
			}
			mark := len(s.Log())
			var outs []string
			distinct := map[string]bool{}
			for _, p := range []string{"hello", "the cat", "a red sun", "one dog", "hello"} {
				text, n, err := archGenerate(ctx, s, model, p, 10)
				if err != nil {
					t.Fatalf("generate %q: %v", p, err)
				}
				if n == 0 {
					t.Errorf("generate %q: no tokens", p)
				}
				t.Logf("%s %q -> %q (%d tokens)", c.name, p, text, n)
				outs = append(outs, text)
				distinct[text] = true
			}
			if outs[0] != outs[4] {
				t.Errorf("not deterministic: %q vs %q", outs[0], outs[4])
			}
			if len(distinct) < 3 {
				t.Errorf("only %d distinct generations for 4 prompts", len(distinct))
			}
			if got := strings.Contains(s.Log()[mark:], "--ollama-engine"); got != c.goEngine {
				t.Errorf("ran on the Go engine: %v, want %v", got, c.goEngine)
			}
		})
	}
}
