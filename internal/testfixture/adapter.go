package testfixture

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"

	"github.com/adapterd/adapterd/internal/gguf"
	"github.com/adapterd/adapterd/internal/lora"
	"github.com/adapterd/adapterd/internal/safetensors"
	"github.com/adapterd/adapterd/internal/tensor"
)

// Adapter describes a LoRA adapter for a Base.
type LoRA struct {
	Base  Base
	Rank  int     // default 4
	Alpha float64 // default 8; trainers often write a float (16.0, 12.5)
	// RSLoRA scales by alpha/√r instead of alpha/r (PEFT's use_rslora).
	RSLoRA  bool
	Targets []string     // PEFT module names; default q_proj, v_proj
	DType   tensor.DType // PEFT storage type; default F32
	Seed    uint64
	// Std is the standard deviation of A and B; default 0.25, which makes
	// (alpha/r)·B·A about as large as the base weights, so the adapter
	// visibly changes greedy output.
	Std float64
}

func (a LoRA) withDefaults() LoRA {
	if a.Rank == 0 {
		a.Rank = 4
	}
	if a.Alpha == 0 {
		a.Alpha = 8
	}
	if len(a.Targets) == 0 {
		a.Targets = []string{"q_proj", "v_proj"}
	}
	if a.DType == "" {
		a.DType = tensor.F32
	}
	if a.Std == 0 {
		a.Std = 0.25
	}
	return a
}

// Pair is one adapted linear layer, in Hugging Face layout.
type Pair struct {
	Layer  int
	Module Module
	A      []float32 // [rank, in], row-major
	B      []float32 // [out, rank], row-major
}

// PEFTName is the safetensors name of the pair's A (ab="A") or B tensor.
func (p Pair) PEFTName(ab string) string {
	if p.Layer < 0 {
		return fmt.Sprintf("base_model.model.%s.lora_%s.weight", p.Module.PEFT, ab)
	}
	return fmt.Sprintf("base_model.model.model.layers.%d.%s.%s.lora_%s.weight", p.Layer, p.Module.Parent, p.Module.PEFT, ab)
}

// GGUFName is the GGUF LoRA name of the pair's A (ab="a") or B tensor.
func (p Pair) GGUFName(ab string) string {
	return p.Tensor() + ".lora_" + ab
}

// Tensor is the name of the base weight the pair adapts.
func (p Pair) Tensor() string {
	if p.Layer < 0 {
		return p.Module.GGUF + ".weight"
	}
	return fmt.Sprintf("blk.%d.%s.weight", p.Layer, p.Module.GGUF)
}

// Pairs returns the adapter's weights exactly as stored: values are rounded
// through DType, so a reference computed from them matches the files. A
// target LMHead is one pair with Layer -1, after the blocks' pairs.
func (a LoRA) Pairs() ([]Pair, error) {
	a = a.withDefaults()
	r := rand.New(rand.NewPCG(a.Seed, 0x6c6f7261))
	var out []Pair
	add := func(layer int, name string) error {
		m, ok := a.Base.Module(name)
		if !ok {
			return fmt.Errorf("unknown target module %q", name)
		}
		p := Pair{Layer: layer, Module: m}
		var err error
		if p.A, err = a.rounded(gaussian(a.Std)(r, a.Rank*m.In)); err != nil {
			return err
		}
		if p.B, err = a.rounded(gaussian(a.Std)(r, m.Out*a.Rank)); err != nil {
			return err
		}
		out = append(out, p)
		return nil
	}
	for l := 0; l < a.Base.Layers; l++ {
		for _, name := range a.Targets {
			if name == LMHead {
				continue
			}
			if err := add(l, name); err != nil {
				return nil, err
			}
		}
	}
	for _, name := range a.Targets {
		if name == LMHead {
			if err := add(-1, name); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

func (a LoRA) rounded(v []float32) ([]float32, error) {
	raw, err := tensor.Encode(a.DType, v)
	if err != nil {
		return nil, err
	}
	return tensor.Decode(a.DType, raw)
}

// WritePEFT writes adapter_config.json and adapter_model.safetensors into dir.
func (a LoRA) WritePEFT(dir string) error {
	a = a.withDefaults()
	pairs, err := a.Pairs()
	if err != nil {
		return err
	}
	var ts []safetensors.TensorData
	for _, p := range pairs {
		ra, _ := tensor.Encode(a.DType, p.A)
		rb, _ := tensor.Encode(a.DType, p.B)
		ts = append(ts,
			safetensors.TensorData{Name: p.PEFTName("A"), DType: string(a.DType), Shape: []int64{int64(a.Rank), int64(p.Module.In)}, Data: ra},
			safetensors.TensorData{Name: p.PEFTName("B"), DType: string(a.DType), Shape: []int64{int64(p.Module.Out), int64(a.Rank)}, Data: rb})
	}
	if err := writeFileAtomic(filepath.Join(dir, "adapter_config.json"), func(f *os.File) error {
		return json.NewEncoder(f).Encode(a.PEFTConfig())
	}); err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, "adapter_model.safetensors"), func(f *os.File) error {
		return safetensors.Write(f, map[string]string{"format": "pt"}, ts)
	})
}

// PEFTConfig is the adapter_config.json content.
func (a LoRA) PEFTConfig() map[string]any {
	a = a.withDefaults()
	return map[string]any{
		"peft_type":               "LORA",
		"task_type":               "CAUSAL_LM",
		"r":                       a.Rank,
		"lora_alpha":              a.Alpha,
		"lora_dropout":            0.0,
		"target_modules":          a.Targets,
		"base_model_name_or_path": "tiny-" + a.Base.Arch,
		"bias":                    "none",
		"fan_in_fan_out":          false,
		"inference_mode":          true,
		"use_rslora":              a.RSLoRA,
	}
}

// Scale is the factor on B·A: alpha/r, or alpha/√r with RSLoRA.
func (a LoRA) Scale() float64 {
	a = a.withDefaults()
	if a.RSLoRA {
		return a.Alpha / math.Sqrt(float64(a.Rank))
	}
	return a.Alpha / float64(a.Rank)
}

// WriteGGUF writes the adapter as an F32 GGUF LoRA, the way llama.cpp's
// convert_lora_to_gguf.py lays it out: lora_a with ne=[in, r], lora_b with
// ne=[r, out], and for llama q/k the RoPE permutation applied to B's rows.
func (a LoRA) WriteGGUF(path string) error {
	a = a.withDefaults()
	pairs, err := a.Pairs()
	if err != nil {
		return err
	}
	kv := []gguf.KV{
		{Key: "general.architecture", Value: a.Base.Arch},
		{Key: "general.type", Value: "adapter"},
		{Key: "general.name", Value: fmt.Sprintf("tiny-%s-lora-%d", a.Base.Arch, a.Seed)},
		{Key: "adapter.type", Value: "lora"},
		// llama.cpp scales a GGUF LoRA by alpha/r, so an rsLoRA adapter is
		// written with the alpha that gives its scale.
		{Key: "adapter.lora.alpha", Value: float32(a.Scale() * float64(a.Rank))},
	}
	var infos []gguf.Tensor
	var data [][]float32
	for _, p := range pairs {
		b := p.B
		if n := a.Base.ropeHeads(p.Module.PEFT); n > 0 {
			b = lora.PermuteRows(b, p.Module.Out, a.Rank, n)
		}
		infos = append(infos,
			gguf.Tensor{Name: p.GGUFName("a"), Shape: []uint64{uint64(p.Module.In), uint64(a.Rank)}, Type: gguf.TypeF32},
			gguf.Tensor{Name: p.GGUFName("b"), Shape: []uint64{uint64(a.Rank), uint64(p.Module.Out)}, Type: gguf.TypeF32})
		data = append(data, p.A, b)
	}
	return writeFileAtomic(path, func(f *os.File) error {
		w, err := gguf.NewWriter(f, kv, infos)
		if err != nil {
			return err
		}
		for _, d := range data {
			raw, _ := tensor.Encode(tensor.F32, d)
			if err := w.WriteTensor(bytesReader(raw)); err != nil {
				return err
			}
		}
		return w.Close()
	})
}

// ropeHeads is the head count for the RoPE row permutation of a module's
// output rows, or 0 when the module is not permuted.
func (b Base) ropeHeads(peft string) int {
	if b.Arch != "llama" {
		return 0
	}
	switch peft {
	case "q_proj":
		return b.Heads
	case "k_proj":
		return b.KVHeads
	}
	return 0
}

func bytesReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }

// Sized returns an adapter for b whose tensor data is about size bytes (in
// F32), for benchmarks from 1 MB to hundreds of MB. The rank grows with size;
// Ollama stores such an adapter without complaint, though nobody would train
// one.
func Sized(b Base, size int64, seed uint64) LoRA {
	a := LoRA{Base: b, Seed: seed, Targets: []string{"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}}
	var perRank int64
	for _, t := range a.Targets {
		m, _ := b.Module(t)
		perRank += int64(m.In+m.Out) * 4 * int64(b.Layers)
	}
	a.Rank = int(max(1, size/perRank))
	a.Alpha = float64(a.Rank)
	a.Std = 0.01
	return a
}
