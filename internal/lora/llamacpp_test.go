package lora_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/adapterd/adapterd/internal/lora"
	"github.com/adapterd/adapterd/internal/ollamatest"
	"github.com/adapterd/adapterd/internal/testfixture"
)

// llamaCompletion greedy-generates n tokens for each prompt with llama.cpp's
// own llama-completion (built by the bed), outside Ollama, from model and,
// when loraPath is set, the GGUF LoRA applied at load time. --simple-io:
// without it the console writer drops output more often still.
func llamaCompletion(t *testing.T, model, loraPath string, prompts []string, n int) []string {
	t.Helper()
	bin, err := ollamatest.TestbedBinary("llama-completion")
	if err != nil {
		t.Fatalf("llama-completion not built (%v); run scripts/testbed.sh", err)
	}
	out := make([]string, len(prompts))
	for i, p := range prompts {
		args := []string{"-m", model, "-p", p, "-n", strconv.Itoa(n), "--temp", "0", "--top-k", "1", "--seed", "42",
			"-c", "256", "-t", "1", "-no-cnv", "--no-display-prompt", "--no-warmup", "--simple-io"}
		if loraPath != "" {
			args = append(args, "--lora", loraPath)
		}
		// llama-completion prints through llama.cpp's asynchronous logger,
		// which at exit sometimes drops the queue's tail (seen: the same
		// command printing all, part or none of its tokens). Its last print
		// is "\n\n", after the tokens, so output ending in it is complete.
		for try := 0; ; try++ {
			var stdout, stderr bytes.Buffer
			cmd := exec.Command(bin, args...)
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Run(); err != nil {
				t.Fatalf("llama-completion %v: %v\n%s", args, err, tailBytes(stderr.Bytes(), 3000))
			}
			if text, ok := strings.CutSuffix(stdout.String(), "\n\n"); ok {
				out[i] = text
				break
			}
			if try == 20 {
				t.Fatalf("llama-completion %v: 20 runs printed incomplete output, last %q", args, stdout.String())
			}
		}
	}
	return out
}

func tailBytes(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// TestLlamaCppRunsWhatAdapterdWrites checks adapterd's outputs with an
// independent engine: llama.cpp's own llama-completion, without Ollama,
// loads each kind of file adapterd writes and greedy-generates token for
// token what the float64 reference merge (testfixture, no code shared with
// lora) generates:
//
//   - the GGUF LoRA adapterd converts from PEFT (all linear layers, so the
//     llama q/k RoPE permutation is in play), applied to the base with --lora;
//   - the merged model;
//   - the merge requantized to q8_0, against the reference quantized to
//     q8_0 by llama.cpp's llama-quantize.
func TestLlamaCppRunsWhatAdapterdWrites(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping llama.cpp from the test bed")
	}
	dir := t.TempDir()
	b := testfixture.TinyLlama()
	basePath, bf := writeBase(t, b)
	fx := testfixture.LoRA{Base: b, Seed: 91, Targets: allTargets}
	a := fixtureAdapter(t, fx, bf, "peft")

	loraPath := filepath.Join(dir, "adapter.gguf")
	var buf bytes.Buffer
	if err := a.WriteGGUF(&buf); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(loraPath, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	mergedPath := filepath.Join(dir, "merged.gguf")
	merged, _, _ := mergeWith(t, basePath, bf, a, lora.MergeOptions{})
	if err := os.WriteFile(mergedPath, merged, 0o644); err != nil {
		t.Fatal(err)
	}
	q8Path := filepath.Join(dir, "merged-q8_0.gguf")
	q8, _, _ := mergeWith(t, basePath, bf, a, lora.MergeOptions{Quantize: must(lora.ParseQuantize("q8_0"))})
	if err := os.WriteFile(q8Path, q8, 0o644); err != nil {
		t.Fatal(err)
	}

	refPath := filepath.Join(dir, "reference.gguf")
	if err := testfixture.WriteReferenceMerge(basePath, fx, refPath); err != nil {
		t.Fatal(err)
	}
	refQ8 := filepath.Join(dir, "reference-q8_0.gguf")
	quantize, err := ollamatest.TestbedBinary("llama-quantize")
	if err != nil {
		t.Fatalf("llama-quantize not built (%v); run scripts/testbed.sh", err)
	}
	if out, err := exec.Command(quantize, refPath, refQ8, "q8_0").CombinedOutput(); err != nil {
		t.Fatalf("llama-quantize: %v\n%s", err, tailBytes(out, 3000))
	}

	want := llamaCompletion(t, refPath, "", prompts, 10)
	baseOut := llamaCompletion(t, basePath, "", prompts, 10)
	wantQ8 := llamaCompletion(t, refQ8, "", prompts, 10)
	changed := 0
	for i := range want {
		if want[i] != baseOut[i] {
			changed++
		}
	}
	if changed == 0 {
		t.Fatal("the adapter changes no generation; the comparison would prove nothing")
	}
	for _, c := range []struct {
		name        string
		model, lora string
		want        []string
	}{
		{"GGUF LoRA on the base (--lora)", basePath, loraPath, want},
		{"merged model", mergedPath, "", want},
		{"merge requantized to q8_0, vs the reference by llama-quantize", q8Path, "", wantQ8},
	} {
		got := llamaCompletion(t, c.model, c.lora, prompts, 10)
		same := 0
		for i := range got {
			if got[i] == c.want[i] {
				same++
			} else {
				t.Logf("%s: %q: got %q, reference %q", c.name, prompts[i], got[i], c.want[i])
			}
		}
		t.Logf("%s: %d of %d prompts token-identical to the reference (the adapter changes %d)", c.name, same, len(prompts), changed)
		if same != len(prompts) {
			t.Errorf("%s: %d of %d prompts token-identical to the reference", c.name, same, len(prompts))
		}
	}
}
