package testfixture

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/adapterd/adapterd/internal/gguf"
	"github.com/adapterd/adapterd/internal/safetensors"
	"github.com/adapterd/adapterd/internal/tensor"
)

func TestBaseIsWhatOllamaMDDescribes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tiny.gguf")
	if err := TinyLlama().WriteGGUF(path); err != nil {
		t.Fatal(err)
	}
	f, err := gguf.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if f.Architecture() != "llama" {
		t.Errorf("arch %q", f.Architecture())
	}
	if toks, _ := f.Get("tokenizer.ggml.tokens"); len(toks.([]string)) != 288 {
		t.Errorf("vocab %d, want 288", len(toks.([]string)))
	}
	q, ok := f.Tensor("blk.1.attn_q.weight")
	if !ok || !reflect.DeepEqual(q.Shape, []uint64{64, 64}) || q.Type != gguf.TypeF32 {
		t.Errorf("attn_q = %+v", q)
	}
	k, _ := f.Tensor("blk.0.attn_k.weight")
	if !reflect.DeepEqual(k.Shape, []uint64{64, 32}) {
		t.Errorf("attn_k shape %v", k.Shape)
	}
	if f.Size > 600<<10 {
		t.Errorf("base is %d bytes; OLLAMA.md says about 480 KB", f.Size)
	}
}

func TestSeedsGiveDifferentAdapters(t *testing.T) {
	a1, _ := LoRA{Base: TinyLlama(), Seed: 1}.Pairs()
	a1b, _ := LoRA{Base: TinyLlama(), Seed: 1}.Pairs()
	a2, _ := LoRA{Base: TinyLlama(), Seed: 2}.Pairs()
	if !reflect.DeepEqual(a1, a1b) {
		t.Error("same seed, different weights")
	}
	if reflect.DeepEqual(a1[0].A, a2[0].A) {
		t.Error("different seeds, same weights")
	}
}

func TestPEFTLayout(t *testing.T) {
	for _, dt := range []tensor.DType{tensor.F32, tensor.F16, tensor.BF16} {
		t.Run(string(dt), func(t *testing.T) {
			dir := t.TempDir()
			a := LoRA{Base: TinyLlama(), Seed: 3, DType: dt, Targets: []string{"q_proj", "k_proj", "down_proj"}}
			if err := a.WritePEFT(dir); err != nil {
				t.Fatal(err)
			}
			f, err := safetensors.ReadFile(filepath.Join(dir, "adapter_model.safetensors"))
			if err != nil {
				t.Fatal(err)
			}
			if len(f.Tensors) != 2*3*2 {
				t.Fatalf("%d tensors", len(f.Tensors))
			}
			ka, ok := f.Tensor("base_model.model.model.layers.1.self_attn.k_proj.lora_A.weight")
			if !ok || ka.DType != string(dt) || !reflect.DeepEqual(ka.Shape, []int64{4, 64}) {
				t.Errorf("k lora_A = %+v", ka)
			}
			kb, _ := f.Tensor("base_model.model.model.layers.1.self_attn.k_proj.lora_B.weight")
			if !reflect.DeepEqual(kb.Shape, []int64{32, 4}) {
				t.Errorf("k lora_B shape %v", kb.Shape)
			}
			db, _ := f.Tensor("base_model.model.model.layers.0.mlp.down_proj.lora_A.weight")
			if !reflect.DeepEqual(db.Shape, []int64{4, 128}) {
				t.Errorf("down lora_A shape %v", db.Shape)
			}
			var cfg map[string]any
			b, _ := os.ReadFile(filepath.Join(dir, "adapter_config.json"))
			if err := json.Unmarshal(b, &cfg); err != nil || cfg["peft_type"] != "LORA" || cfg["lora_alpha"] != 8.0 {
				t.Errorf("config %v %v", cfg, err)
			}
		})
	}
}

func TestGGUFLoRALayout(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lora.gguf")
	a := LoRA{Base: TinyLlama(), Seed: 4, Targets: []string{"q_proj", "v_proj"}}
	if err := a.WriteGGUF(path); err != nil {
		t.Fatal(err)
	}
	f, err := gguf.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if f.String("general.type") != "adapter" || f.String("adapter.type") != "lora" {
		t.Errorf("kv %+v", f.KV)
	}
	qa, _ := f.Tensor("blk.0.attn_q.weight.lora_a")
	qb, _ := f.Tensor("blk.0.attn_q.weight.lora_b")
	vb, _ := f.Tensor("blk.1.attn_v.weight.lora_b")
	if !reflect.DeepEqual(qa.Shape, []uint64{64, 4}) || !reflect.DeepEqual(qb.Shape, []uint64{4, 64}) || !reflect.DeepEqual(vb.Shape, []uint64{4, 32}) {
		t.Errorf("shapes a=%v b=%v vb=%v", qa.Shape, qb.Shape, vb.Shape)
	}
}

func TestSized(t *testing.T) {
	a := Sized(TinyLlama(), 1<<20, 1)
	path := filepath.Join(t.TempDir(), "big.gguf")
	if err := a.WriteGGUF(path); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(path)
	if st.Size() < 900<<10 || st.Size() > 1100<<10 {
		t.Errorf("1 MiB adapter is %d bytes", st.Size())
	}
}
