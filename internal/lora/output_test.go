package lora_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/adapterd/adapterd/internal/gguf"
	"github.com/adapterd/adapterd/internal/lora"
	"github.com/adapterd/adapterd/internal/testfixture"
)

// An lm_head LoRA, in either format, is one pair outside the blocks
// (Layer -1, module lm_head), checked against the base's width and, when
// model_info gives it, its vocabulary.
func TestOutputAdapterIsDetectedAndChecked(t *testing.T) {
	b := testfixture.TinyLlama3()
	fx := testfixture.LoRA{Base: b, Seed: 7, Targets: []string{"q_proj", testfixture.LMHead}}
	info := lora.BaseInfo{Arch: "llama", Heads: b.Heads, KVHeads: b.KVHeads, Layers: b.Layers, Embd: b.Embd, FF: b.FF, HeadDim: b.HeadDim()}
	for _, format := range []string{"peft", "gguf"} {
		t.Run(format, func(t *testing.T) {
			dir := t.TempDir()
			var err error
			if format == "peft" {
				err = fx.WritePEFT(dir)
			} else {
				err = fx.WriteGGUF(filepath.Join(dir, "lora.gguf"))
			}
			if err != nil {
				t.Fatal(err)
			}
			a, err := lora.Detect(dir)
			if err != nil {
				t.Fatal(err)
			}
			if !a.AdaptsOutput() {
				t.Fatalf("AdaptsOutput false; pairs %+v", a.Pairs)
			}
			head := a.Pairs[0]
			if head.Layer != -1 || head.Module != "lm_head" || head.In != b.Embd || head.Out != b.VocabSize() {
				t.Errorf("lm_head pair %+v, want layer -1, in %d, out %d", head, b.Embd, b.VocabSize())
			}
			for _, c := range []struct {
				name  string
				vocab int
				want  string
			}{
				{"vocabulary unknown", 0, ""},
				{"vocabulary fits", b.VocabSize(), ""},
				{"another vocabulary", b.VocabSize() + 1, "needs In=64 Out=" + itoa(b.VocabSize()+1)},
			} {
				bi := info
				bi.Vocab = c.vocab
				err := a.CheckBase("tiny", bi)
				if (err == nil) != (c.want == "") || (err != nil && !strings.Contains(err.Error(), c.want)) {
					t.Errorf("%s: CheckBase = %v, want %q", c.name, err, c.want)
				}
			}
		})
	}
}

func itoa(n int) string {
	var b []byte
	for n > 0 || len(b) == 0 {
		b = append([]byte{byte('0' + n%10)}, b...)
		n /= 10
	}
	return string(b)
}

// Merging an lm_head LoRA into a tied base adds output.weight = token_embd +
// delta after output_norm and keeps token_embd byte for byte; into a base
// with its own output.weight it changes that tensor in place. Both equal
// testfixture's independent reference.
func TestMergeOutputAdapter(t *testing.T) {
	for _, c := range []struct {
		name string
		base testfixture.Base
	}{
		{"tied", testfixture.TinyLlama3()},
		{"untied", testfixture.TinyMistral()},
	} {
		for _, source := range []string{"peft", "gguf"} {
			t.Run(c.name+"/"+source, func(t *testing.T) {
				basePath, bf := writeBase(t, c.base)
				fx := testfixture.LoRA{Base: c.base, Seed: 8, Targets: []string{"v_proj", testfixture.LMHead}}
				a := fixtureAdapter(t, fx, bf, source)
				outPath, mf, st := mergeFile(t, basePath, bf, a)
				refPath := filepath.Join(t.TempDir(), "ref.gguf")
				if err := testfixture.WriteReferenceMerge(basePath, fx, refPath); err != nil {
					t.Fatal(err)
				}
				rf, err := gguf.ReadFile(refPath)
				if err != nil {
					t.Fatal(err)
				}
				wantN := len(bf.Tensors)
				if c.base.Tied {
					wantN++
				}
				if len(mf.Tensors) != wantN || st.Merged != c.base.Layers+1 {
					t.Fatalf("%d tensors, %d merged; want %d tensors, %d merged", len(mf.Tensors), st.Merged, wantN, c.base.Layers+1)
				}
				for i, n := range []string{"token_embd.weight", "output_norm.weight", "output.weight"} {
					if mf.Tensors[i].Name != n {
						t.Errorf("tensor %d is %s, want %s (where convert_hf_to_gguf.py puts it)", i, mf.Tensors[i].Name, n)
					}
				}
				if !bytes.Equal(rawTensor(t, outPath, mf, "token_embd.weight"), rawTensor(t, basePath, bf, "token_embd.weight")) {
					t.Error("token_embd.weight changed; PEFT's lm_head LoRA leaves the input embedding alone")
				}
				for _, name := range []string{"output.weight", "blk.1.attn_v.weight"} {
					if err := near(tensor64(t, outPath, mf, name), tensor64(t, refPath, rf, name), 1e-6, 1e-6); err != nil {
						t.Errorf("%s: %v", name, err)
					}
				}
			})
		}
	}
}

// A tied base without token_embd.weight cannot be untied: the merge names
// the missing tensor instead of writing a model.
func TestMergeOutputAdapterNeedsAnEmbedding(t *testing.T) {
	b := testfixture.TinyLlama3()
	basePath, bf := writeBase(t, b)
	a := fixtureAdapter(t, testfixture.LoRA{Base: b, Seed: 9, Targets: []string{testfixture.LMHead}}, bf, "gguf")
	noEmb := *bf
	noEmb.Tensors = nil
	for _, tt := range bf.Tensors {
		if tt.Name != "token_embd.weight" {
			noEmb.Tensors = append(noEmb.Tensors, tt)
		}
	}
	in, _ := os.Open(basePath)
	defer in.Close()
	var out bytes.Buffer
	_, err := lora.Merge(&out, in, &noEmb, a)
	if err == nil || !strings.Contains(err.Error(), "output.weight") || out.Len() != 0 {
		t.Errorf("merge = %v with %d bytes written, want an error naming output.weight and nothing written", err, out.Len())
	}
}

func TestTiesOutput(t *testing.T) {
	for _, c := range []struct {
		tensors []string
		want    bool
	}{
		{[]string{"token_embd.weight", "output.weight"}, false},
		{[]string{"token_embd.weight"}, true},
		{[]string{"output.weight"}, false},
		{nil, false},
	} {
		b := lora.BaseInfo{Tensors: map[string][]uint64{}}
		for _, n := range c.tensors {
			b.Tensors[n] = []uint64{64, 300}
		}
		if got := b.TiesOutput(); got != c.want {
			t.Errorf("tensors %v: TiesOutput %v, want %v", c.tensors, got, c.want)
		}
	}
}
