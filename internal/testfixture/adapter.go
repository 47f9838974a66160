package testfixture

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"

	"github.com/adapterd/adapterd/internal/gguf"
	"github.com/adapterd/adapterd/internal/lora"
	"github.com/adapterd/adapterd/internal/safetensors"
	"github.com/adapterd/adapterd/internal/tensor"
)

// LoRA describes a LoRA adapter for a Base, and the options of the tools
// that write adapter folders (PEFT's LoraConfig, convert_lora_to_gguf.py).
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

	// RankPattern and AlphaPattern are PEFT's rank_pattern and
	// alpha_pattern, written in this order (see Pattern).
	RankPattern, AlphaPattern []Pattern
	// Layers are the layers that get pairs, written as
	// layers_to_transform; nil means every layer.
	Layers []int
	// TargetModules, when set, is written as target_modules instead of
	// the Targets list: "all-linear", or a regular expression.
	TargetModules string
	// Embedding adds a LoRA on embed_tokens (lora_embedding_A [r, vocab],
	// lora_embedding_B [hidden, r]) to the pairs.
	Embedding bool
	// ModulesToSave are modules saved whole: "lm_head", "embed_tokens".
	ModulesToSave []string
	// StateDictNames names full weights as a state dict holds them
	// (…lm_head.modules_to_save.default.weight) instead of as
	// save_pretrained writes them (…lm_head.weight).
	StateDictNames bool
	// Config holds more adapter_config.json keys (a QLoRA run's, say);
	// they override the ones PEFTConfig writes.
	Config map[string]any

	// GGUFType is the tensor type WriteGGUF writes, like
	// convert_lora_to_gguf.py --outtype: F32 (the zero value), F16, BF16
	// or Q8_0 (tensors whose rows are not whole Q8_0 blocks fall back to
	// F16, as the script does). Pairs round through it, so a LoRA with a
	// GGUFType is for WriteGGUF only.
	GGUFType gguf.TensorType
	// BaseModelMeta makes WriteGGUF write the general.base_model.* keys
	// convert_lora_to_gguf.py copies from the model card.
	BaseModelMeta bool
}

// Pattern is one rank_pattern or alpha_pattern entry. Key goes into the
// config as written; Layer (-1: every layer) and Module (a PEFT name, such
// as "q_proj") say which pairs the test means it to select, so the fixture
// states the expected outcome instead of re-implementing PEFT's matching.
type Pattern struct {
	Key    string
	Layer  int
	Module string
	Value  float64
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

// Pair is one adapted linear layer (or embed_tokens, Layer -1), in Hugging
// Face layout.
type Pair struct {
	Layer  int
	Module Module
	Rank   int
	Scale  float64   // the factor on B·A
	A      []float32 // [rank, in], row-major
	B      []float32 // [out, rank], row-major
}

// PEFTName is the safetensors name of the pair's A (ab="A") or B tensor.
func (p Pair) PEFTName(ab string) string {
	if p.Module.PEFT == "embed_tokens" {
		return "base_model.model.model.embed_tokens.lora_embedding_" + ab
	}
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

// embedModule is embed_tokens as a Module: A is [r, vocab], B [hidden, r].
func (a LoRA) embedModule() Module {
	return Module{PEFT: "embed_tokens", GGUF: "token_embd", In: a.vocab(), Out: a.Base.Embd}
}

func (a LoRA) vocab() int { return a.Base.VocabSize() }

// patternValue is the value of the first pattern meant for (layer, module).
func patternValue(ps []Pattern, layer int, module string) (float64, bool) {
	for _, p := range ps {
		if p.Module == module && (p.Layer < 0 || p.Layer == layer) {
			return p.Value, true
		}
	}
	return 0, false
}

func (a LoRA) pairRankScale(layer int, module string) (int, float64) {
	r, alpha := a.Rank, a.Alpha
	if v, ok := patternValue(a.RankPattern, layer, module); ok {
		r = int(v)
	}
	if v, ok := patternValue(a.AlphaPattern, layer, module); ok {
		alpha = v
	}
	if a.RSLoRA {
		return r, alpha / math.Sqrt(float64(r))
	}
	return r, alpha / float64(r)
}

// Pairs returns the adapter's weights exactly as stored: values are rounded
// through DType (and GGUFType), so a reference computed from them matches
// the files. A target LMHead is one pair with Layer -1, after the blocks'
// pairs; an Embedding pair (Layer -1, module embed_tokens) comes last.
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
		p.Rank, p.Scale = a.pairRankScale(layer, name)
		var err error
		if p.A, err = a.rounded(gaussian(a.Std)(r, p.Rank*m.In), m.In); err != nil {
			return err
		}
		if p.B, err = a.rounded(gaussian(a.Std)(r, m.Out*p.Rank), p.Rank); err != nil {
			return err
		}
		out = append(out, p)
		return nil
	}
	for l := 0; l < a.Base.Layers; l++ {
		if a.Layers != nil && !slices.Contains(a.Layers, l) {
			continue
		}
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
	if a.Embedding {
		m := a.embedModule()
		p := Pair{Layer: -1, Module: m}
		p.Rank, p.Scale = a.pairRankScale(-1, m.PEFT)
		var err error
		// As GGUF stores them (see WriteGGUF), A's columns and B's rows
		// are the rows that get rounded.
		at, err := a.rounded(gaussian(a.Std)(r, p.Rank*m.In), p.Rank)
		if err != nil {
			return nil, err
		}
		p.A = transpose32(at, m.In, p.Rank)
		if p.B, err = a.rounded(gaussian(a.Std)(r, m.Out*p.Rank), p.Rank); err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// rounded rounds v through the PEFT storage type, then through GGUFType
// in rows of rowLen values.
func (a LoRA) rounded(v []float32, rowLen int) ([]float32, error) {
	raw, err := tensor.Encode(a.DType, v)
	if err != nil {
		return nil, err
	}
	v, err = tensor.Decode(a.DType, raw)
	if err != nil {
		return nil, err
	}
	data, typ, err := a.ggufEncode(v, rowLen)
	if err != nil {
		return nil, err
	}
	return ggufDecode(typ, data, len(v))
}

// FullWeight is a module saved whole, [vocab, hidden] row-major as stored.
type FullWeight struct {
	Module string // "lm_head" or "embed_tokens"
	Data   []float32
}

// FullWeights returns the modules_to_save weights, rounded through DType.
// They come from their own random stream, so adding them changes no pair.
func (a LoRA) FullWeights() ([]FullWeight, error) {
	a = a.withDefaults()
	r := rand.New(rand.NewPCG(a.Seed, 0x66756c6c))
	var out []FullWeight
	for _, m := range a.ModulesToSave {
		std := 1.0
		if m == "lm_head" {
			std = 1.5 / math.Sqrt(float64(a.Base.Embd))
		} else if m != "embed_tokens" {
			return nil, fmt.Errorf("testfixture: cannot save %q whole", m)
		}
		raw, err := tensor.Encode(a.DType, gaussian(std)(r, a.vocab()*a.Base.Embd))
		if err != nil {
			return nil, err
		}
		v, err := tensor.Decode(a.DType, raw)
		if err != nil {
			return nil, err
		}
		out = append(out, FullWeight{Module: m, Data: v})
	}
	return out, nil
}

func (f FullWeight) peftName(stateDict bool) string {
	name := "base_model.model." + f.Module
	if f.Module == "embed_tokens" {
		name = "base_model.model.model.embed_tokens"
	}
	if stateDict {
		name += ".modules_to_save.default"
	}
	return name + ".weight"
}

func transpose32(m []float32, rows, cols int) []float32 {
	out := make([]float32, len(m))
	for r := 0; r < rows; r++ {
		for c := 0; c < cols; c++ {
			out[c*rows+r] = m[r*cols+c]
		}
	}
	return out
}

// PEFTFiles is what WritePEFT writes, by file name, for tests that put
// the bytes somewhere themselves (a bucket, a fake hub).
func (a LoRA) PEFTFiles() (map[string][]byte, error) {
	dir, err := os.MkdirTemp("", "testfixture-peft-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	if err := a.WritePEFT(dir); err != nil {
		return nil, err
	}
	out := map[string][]byte{}
	for _, n := range []string{"adapter_config.json", "adapter_model.safetensors"} {
		if out[n], err = os.ReadFile(filepath.Join(dir, n)); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// WritePEFT writes adapter_config.json and adapter_model.safetensors into dir.
func (a LoRA) WritePEFT(dir string) error {
	a = a.withDefaults()
	if a.GGUFType != gguf.TypeF32 {
		return fmt.Errorf("testfixture: GGUFType %s is for WriteGGUF only", a.GGUFType)
	}
	pairs, err := a.Pairs()
	if err != nil {
		return err
	}
	var ts []safetensors.TensorData
	for _, p := range pairs {
		ra, _ := tensor.Encode(a.DType, p.A)
		rb, _ := tensor.Encode(a.DType, p.B)
		ts = append(ts,
			safetensors.TensorData{Name: p.PEFTName("A"), DType: string(a.DType), Shape: []int64{int64(p.Rank), int64(p.Module.In)}, Data: ra},
			safetensors.TensorData{Name: p.PEFTName("B"), DType: string(a.DType), Shape: []int64{int64(p.Module.Out), int64(p.Rank)}, Data: rb})
	}
	full, err := a.FullWeights()
	if err != nil {
		return err
	}
	for _, f := range full {
		raw, _ := tensor.Encode(a.DType, f.Data)
		ts = append(ts, safetensors.TensorData{Name: f.peftName(a.StateDictNames), DType: string(a.DType), Shape: []int64{int64(a.vocab()), int64(a.Base.Embd)}, Data: raw})
	}
	if err := writeFileAtomic(filepath.Join(dir, "adapter_config.json"), func(f *os.File) error {
		return writeJSONInOrder(f, a.PEFTConfig())
	}); err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, "adapter_model.safetensors"), func(f *os.File) error {
		return safetensors.Write(f, map[string]string{"format": "pt"}, ts)
	})
}

// PEFTConfig is the adapter_config.json content. rank_pattern and
// alpha_pattern are orderedJSON, since PEFT takes the first key that
// matches.
func (a LoRA) PEFTConfig() map[string]any {
	a = a.withDefaults()
	targets := any(a.Targets)
	if a.Embedding {
		targets = append(slices.Clone(a.Targets), "embed_tokens")
	}
	if a.TargetModules != "" {
		targets = a.TargetModules
	}
	c := map[string]any{
		"peft_type":               "LORA",
		"task_type":               "CAUSAL_LM",
		"r":                       a.Rank,
		"lora_alpha":              a.Alpha,
		"lora_dropout":            0.0,
		"target_modules":          targets,
		"base_model_name_or_path": "tiny-" + a.Base.Arch,
		"bias":                    "none",
		"fan_in_fan_out":          false,
		"inference_mode":          true,
		"use_rslora":              a.RSLoRA,
		"rank_pattern":            patternJSON(a.RankPattern),
		"alpha_pattern":           patternJSON(a.AlphaPattern),
		"modules_to_save":         a.ModulesToSave,
		"layers_to_transform":     a.Layers,
		"layers_pattern":          nil,
	}
	for k, v := range a.Config {
		c[k] = v
	}
	return c
}

// orderedJSON is a JSON object that keeps its keys in order.
type orderedJSON [][2]any

func (o orderedJSON) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, kv := range o {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(kv[0])
		v, err := json.Marshal(kv[1])
		if err != nil {
			return nil, err
		}
		b.Write(k)
		b.WriteByte(':')
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

func patternJSON(ps []Pattern) orderedJSON {
	o := orderedJSON{}
	for _, p := range ps {
		o = append(o, [2]any{p.Key, p.Value})
	}
	return o
}

func writeJSONInOrder(f *os.File, v any) error {
	return json.NewEncoder(f).Encode(v)
}

// Scale is the factor on B·A: alpha/r, or alpha/√r with RSLoRA.
func (a LoRA) Scale() float64 {
	a = a.withDefaults()
	if a.RSLoRA {
		return a.Alpha / math.Sqrt(float64(a.Rank))
	}
	return a.Alpha / float64(a.Rank)
}

// WriteGGUF writes the adapter as a GGUF LoRA, the way llama.cpp's
// convert_lora_to_gguf.py lays it out: lora_a with ne=[in, r], lora_b with
// ne=[r, out], for llama q/k the RoPE permutation applied to B's rows, and
// for embed_tokens llama.cpp's own layout (lora_a ne=[r, vocab], the
// transpose of PEFT's A; lora_b ne=[r, hidden], PEFT's B). Tensors are
// GGUFType; adapter.lora.alpha is a float32, as the script writes it.
func (a LoRA) WriteGGUF(path string) error {
	a = a.withDefaults()
	if len(a.ModulesToSave) > 0 {
		return fmt.Errorf("testfixture: a GGUF LoRA cannot hold modules_to_save")
	}
	if len(a.AlphaPattern) > 0 {
		// convert_lora_to_gguf.py writes one lora_alpha and ignores
		// alpha_pattern; llama.cpp scales each pair by alpha/r.
		return fmt.Errorf("testfixture: a GGUF LoRA has one alpha; alpha_pattern cannot be written")
	}
	pairs, err := a.Pairs()
	if err != nil {
		return err
	}
	alpha := a.Alpha
	if a.RSLoRA {
		// llama.cpp scales a GGUF LoRA by alpha/r, so an rsLoRA adapter
		// is written with the alpha that gives its scale.
		if len(a.RankPattern) > 0 {
			return fmt.Errorf("testfixture: rsLoRA with rank_pattern has no single GGUF alpha")
		}
		alpha = a.Scale() * float64(a.Rank)
	}
	kv := []gguf.KV{
		{Key: "general.architecture", Value: a.Base.Arch},
		{Key: "general.type", Value: "adapter"},
		{Key: "general.name", Value: fmt.Sprintf("tiny-%s-lora-%d", a.Base.Arch, a.Seed)},
	}
	if a.BaseModelMeta {
		kv = append(kv,
			gguf.KV{Key: "general.base_model.count", Value: uint32(1)},
			gguf.KV{Key: "general.base_model.0.name", Value: "Tiny " + a.Base.Arch},
			gguf.KV{Key: "general.base_model.0.organization", Value: "Adapterd Fixtures"},
			gguf.KV{Key: "general.base_model.0.repo_url", Value: "https://huggingface.co/adapterd/tiny-" + a.Base.Arch},
			gguf.KV{Key: "general.tags", Value: []string{"generated_from_trainer", "lora"}},
		)
	}
	kv = append(kv,
		gguf.KV{Key: "general.file_type", Value: ggufFileType(a.GGUFType)},
		gguf.KV{Key: "general.quantization_version", Value: uint32(2)},
		gguf.KV{Key: "adapter.type", Value: "lora"},
		gguf.KV{Key: "adapter.lora.alpha", Value: float32(alpha)},
	)
	var infos []gguf.Tensor
	var data [][]byte
	add := func(name string, ne0, ne1 int, v []float32) error {
		raw, typ, err := a.ggufEncode(v, ne0)
		if err != nil {
			return err
		}
		infos = append(infos, gguf.Tensor{Name: name, Shape: []uint64{uint64(ne0), uint64(ne1)}, Type: typ})
		data = append(data, raw)
		return nil
	}
	for _, p := range pairs {
		if p.Module.PEFT == "embed_tokens" {
			if err := add(p.GGUFName("a"), p.Rank, p.Module.In, transpose32(p.A, p.Rank, p.Module.In)); err != nil {
				return err
			}
			if err := add(p.GGUFName("b"), p.Rank, p.Module.Out, p.B); err != nil {
				return err
			}
			continue
		}
		b := p.B
		if n := a.Base.ropeHeads(p.Module.PEFT); n > 0 {
			b = lora.PermuteRows(b, p.Module.Out, p.Rank, n)
		}
		if err := add(p.GGUFName("a"), p.Module.In, p.Rank, p.A); err != nil {
			return err
		}
		if err := add(p.GGUFName("b"), p.Rank, p.Module.Out, b); err != nil {
			return err
		}
	}
	return writeFileAtomic(path, func(f *os.File) error {
		w, err := gguf.NewWriter(f, kv, infos)
		if err != nil {
			return err
		}
		for _, d := range data {
			if err := w.WriteTensor(bytesReader(d)); err != nil {
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
