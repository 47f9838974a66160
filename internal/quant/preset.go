package quant

import (
	"fmt"
	"strings"

	"github.com/adapterd/adapterd/internal/gguf"
)

// Preset is a llama.cpp file type ("Q4_K_M"): a default tensor type plus
// the per-tensor choices llama.cpp's llama_tensor_get_type makes for it.
type Preset struct {
	name  string
	ftype uint32          // llama_ftype, written as general.file_type
	def   gguf.TensorType // the type most weights get
}

// presets are llama.cpp's, by llama_ftype number. Ollama v0.24.0's create
// with quantize offers Q8_0, Q4_K_S and Q4_K_M of these.
var presets = []Preset{
	{"Q4_0", 2, gguf.TypeQ4_0},
	{"Q4_1", 3, gguf.TypeQ4_1},
	{"Q8_0", 7, gguf.TypeQ8_0},
	{"Q5_0", 8, gguf.TypeQ5_0},
	{"Q5_1", 9, gguf.TypeQ5_1},
	{"Q2_K", 10, gguf.TypeQ2_K},
	{"Q3_K_S", 11, gguf.TypeQ3_K},
	{"Q3_K_M", 12, gguf.TypeQ3_K},
	{"Q3_K_L", 13, gguf.TypeQ3_K},
	{"Q4_K_S", 14, gguf.TypeQ4_K},
	{"Q4_K_M", 15, gguf.TypeQ4_K},
	{"Q5_K_S", 16, gguf.TypeQ5_K},
	{"Q5_K_M", 17, gguf.TypeQ5_K},
	{"Q6_K", 18, gguf.TypeQ6_K},
}

// llama.cpp's short names for the _M variants.
var presetAliases = map[string]string{"Q3_K": "Q3_K_M", "Q4_K": "Q4_K_M", "Q5_K": "Q5_K_M"}

// PresetNames lists the names ParsePreset accepts, as llama.cpp spells them.
func PresetNames() []string {
	s := make([]string, len(presets))
	for i, p := range presets {
		s[i] = spell(p.name)
	}
	return s
}

// spell writes a preset as Ollama's docs do: "q4_K_M".
func spell(name string) string { return "q" + name[1:] }

// ParsePreset reads a preset name in any letter case: "q4_K_M", "Q4_K_M",
// "q4_k_m"; "q4_K" means q4_K_M as in llama.cpp.
func ParsePreset(s string) (Preset, error) {
	u := strings.ToUpper(strings.TrimSpace(s))
	if a, ok := presetAliases[u]; ok {
		u = a
	}
	for _, p := range presets {
		if p.name == u {
			return p, nil
		}
	}
	return Preset{}, fmt.Errorf("unknown quantization %q (want one of %s)", s, strings.Join(PresetNames(), ", "))
}

// String is the preset's name as llama.cpp's quantize tool spells it.
func (p Preset) String() string { return spell(p.name) }

// FileType is the llama_ftype number for general.file_type.
func (p Preset) FileType() uint32 { return p.ftype }

// Default is the type most weights get.
func (p Preset) Default() gguf.TensorType { return p.def }

// Quantized reports whether the preset quantizes tensor t at all: weights of
// two or more dimensions, except norms, gates of experts, positional and
// token-type embeddings, small recurrent-state weights and vision/audio
// encoders. This is llama.cpp's list joined with Ollama's.
func Quantized(t gguf.Tensor) bool {
	n := t.Name
	if !strings.HasSuffix(n, "weight") || len(t.Shape) < 2 {
		return false
	}
	if strings.HasPrefix(n, "v.") || strings.HasPrefix(n, "a.") || strings.Contains(n, "mm.") {
		return false
	}
	switch n {
	case "position_embd.weight", "token_types.weight", "per_layer_token_embd.weight":
		return false
	}
	for _, s := range []string{
		"_norm.weight", "ffn_gate_inp.weight", "ffn_gate_inp_shexp.weight",
		"altup", "laurel", "per_layer_model_proj", ".position_embd.",
		"ssm_conv1d.weight", "shortconv.conv.weight",
		"time_mix_first.weight", "time_mix_w1.weight", "time_mix_w2.weight",
		"time_mix_decay_w1.weight", "time_mix_decay_w2.weight", "time_mix_lerp_fused.weight",
		"attn_rel_b.weight",
	} {
		if strings.Contains(n, s) {
			return false
		}
	}
	return true
}

// Plan returns the type each of f's tensors gets under the preset, in f's
// tensor order: the tensor's own type when Quantized says no, else the
// preset's default adjusted by llama.cpp's rules:
//
//   - output.weight (token_embd.weight when there is no output) gets Q6_K,
//     or Q8_0 when its rows do not fit the default type's blocks or the
//     preset is q8_0;
//   - attn_v gets more bits in some layers (Q6_K for _M in the layers
//     use_more_bits picks, Q5_K in the first 4 for q4_K_S, …), ffn_down
//     likewise, attn_output and attn_qkv for some presets;
//   - a type whose blocks do not fit the rows falls back: Q4_K to Q5_0,
//     Q5_K to Q5_1, Q6_K to Q8_0, and anything else that still does not fit
//     to F16 (llama.cpp stops there; Ollama does this).
//
// The layer counters run in the file's tensor order, as Ollama's quantizer
// counts; llama.cpp's own tool counts in tensor-name order, which differs
// for models with 10 or more layers. A Q2_K or Q3_K weight whose rows are
// not a multiple of 256 would need IQ4_NL, which adapterd does not write:
// Plan refuses it, naming the tensor.
func (p Preset) Plan(f *gguf.File) ([]gguf.TensorType, error) {
	arch := f.Architecture()
	u := func(key string) int {
		v, _ := f.Uint(arch + "." + key)
		return int(v)
	}
	st := planState{
		nExpert: max(1, u("expert_count")),
		nLayer:  u("block_count"),
	}
	if kv := u("attention.head_count_kv"); kv > 0 {
		st.nGQA = u("attention.head_count") / kv
	}
	for _, t := range f.Tensors {
		switch {
		case strings.Contains(t.Name, "attn_v.weight"), strings.Contains(t.Name, "attn_qkv.weight"),
			strings.Contains(t.Name, "attn_kv_b.weight"):
			st.nAttnV++
		case t.Name == "output.weight":
			st.hasOutput = true
		}
	}
	out := make([]gguf.TensorType, len(f.Tensors))
	for i, t := range f.Tensors {
		out[i] = t.Type
		if !Quantized(t) {
			continue
		}
		typ, err := p.tensorType(&st, t)
		if err != nil {
			return nil, err
		}
		out[i] = typ
	}
	return out, nil
}

type planState struct {
	nExpert, nLayer, nGQA int
	nAttnV, iAttnV        int
	iFfnDown              int
	hasOutput             bool
}

func useMoreBits(i, n int) bool {
	return i < n/8 || i >= 7*n/8 || (i-n/8)%3 == 2
}

// tensorType is llama_tensor_get_type for our presets.
func (p Preset) tensorType(st *planState, t gguf.Tensor) (gguf.TensorType, error) {
	name, typ := t.Name, p.def
	nx := t.Shape[0]
	is := func(names ...string) bool {
		for _, n := range names {
			if p.name == n {
				return true
			}
		}
		return false
	}
	switch {
	case name == "output.weight" || (!st.hasOutput && name == "token_embd.weight"):
		if nx%typ.BlockSize() != 0 {
			typ = gguf.TypeQ8_0
		} else if typ != gguf.TypeQ8_0 {
			typ = gguf.TypeQ6_K
		}
	case name == "token_embd.weight":
		// llama.cpp changes it only for i-quant presets.
	case strings.Contains(name, "attn_v.weight"):
		switch {
		case is("Q2_K"):
			typ = gguf.TypeQ3_K
			if st.nGQA >= 4 {
				typ = gguf.TypeQ4_K
			}
		case is("Q3_K_M"):
			typ = gguf.TypeQ4_K
			if st.iAttnV < 2 {
				typ = gguf.TypeQ5_K
			}
		case is("Q3_K_L"):
			typ = gguf.TypeQ5_K
		case is("Q4_K_M", "Q5_K_M") && useMoreBits(st.iAttnV, st.nAttnV):
			typ = gguf.TypeQ6_K
		case is("Q4_K_S") && st.iAttnV < 4:
			typ = gguf.TypeQ5_K
		}
		if st.nExpert == 8 {
			typ = gguf.TypeQ8_0
		}
		st.iAttnV++
	case strings.Contains(name, "attn_k.weight"):
		if st.nExpert == 8 {
			typ = gguf.TypeQ8_0
		}
	case strings.Contains(name, "ffn_down"):
		i, n := st.iFfnDown, st.nLayer
		if st.nExpert > 1 {
			if l, ok := blockIndex(name); ok {
				i = l
			}
		}
		switch {
		case is("Q2_K"):
			typ = gguf.TypeQ3_K
		case is("Q3_K_M"):
			typ = gguf.TypeQ4_K
			if i < n/16 {
				typ = gguf.TypeQ5_K
			}
		case is("Q3_K_L"):
			typ = gguf.TypeQ5_K
		case is("Q4_K_M"):
			if useMoreBits(i, n) {
				typ = gguf.TypeQ6_K
			}
		case is("Q5_K_M") && useMoreBits(i, n):
			typ = gguf.TypeQ6_K
		case is("Q4_K_S") && i < n/8:
			typ = gguf.TypeQ5_K
		}
		st.iFfnDown++
	case strings.Contains(name, "attn_output.weight"):
		if st.nExpert == 8 {
			if is("Q2_K", "Q3_K_S", "Q3_K_M", "Q4_K_S", "Q4_K_M") {
				typ = gguf.TypeQ5_K
			}
		} else {
			switch {
			case is("Q2_K"):
				typ = gguf.TypeQ3_K
			case is("Q3_K_M"):
				typ = gguf.TypeQ4_K
			case is("Q3_K_L"):
				typ = gguf.TypeQ5_K
			}
		}
	case strings.Contains(name, "attn_qkv.weight"):
		switch {
		case is("Q3_K_M", "Q3_K_L"):
			typ = gguf.TypeQ4_K
		case is("Q4_K_M"):
			typ = gguf.TypeQ5_K
		case is("Q5_K_M"):
			typ = gguf.TypeQ6_K
		}
	}
	if nx%typ.BlockSize() == 0 {
		return typ, nil
	}
	switch typ {
	case gguf.TypeQ2_K, gguf.TypeQ3_K:
		return 0, fmt.Errorf("%s: rows of %d do not fit %s's blocks of 256, and llama.cpp's fallback IQ4_NL is not supported; use a q4_K or larger preset", name, nx, typ)
	case gguf.TypeQ4_K:
		typ = gguf.TypeQ5_0
	case gguf.TypeQ5_K:
		typ = gguf.TypeQ5_1
	case gguf.TypeQ6_K:
		typ = gguf.TypeQ8_0
	}
	if nx%typ.BlockSize() != 0 {
		typ = gguf.TypeF16
	}
	return typ, nil
}

// blockIndex is N in "blk.N.…".
func blockIndex(name string) (int, bool) {
	rest, ok := strings.CutPrefix(name, "blk.")
	if !ok {
		return 0, false
	}
	n, i := 0, 0
	for ; i < len(rest) && rest[i] >= '0' && rest[i] <= '9'; i++ {
		n = 10*n + int(rest[i]-'0')
	}
	return n, i > 0 && i < len(rest) && rest[i] == '.'
}
