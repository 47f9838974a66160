package lora

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"

	"github.com/adapterd/adapterd/internal/spec"
)

// BaseInfo is what adapterd knows of a base model: the widths an adapter's
// pairs must match (from /api/show's model_info, BaseInfoFromModelInfo) and
// the tensor shapes that mapping and merging need (from the GGUF header,
// BaseInfoFromGGUF, or a verbose show).
type BaseInfo struct {
	Arch string
	// Heads and KVHeads drive the llama-family RoPE permutation; 0 when the
	// header does not hold them as single numbers.
	Heads   int                 // attention.head_count
	KVHeads int                 // attention.head_count_kv
	Layers  int                 // block_count
	Embd    int                 // embedding_length
	FF      int                 // feed_forward_length; 0 when the model does not say
	HeadDim int                 // attention.key_length, else Embd/Heads
	Vocab   int                 // vocab_size; 0 when the model does not say
	Tensors map[string][]uint64 // name -> ggml shape ([in, out] for a weight)
}

// BaseInfoFromModelInfo reads a BaseInfo from /api/show's model_info. Numbers
// arrive from JSON as float64; json.Number and Go integers are accepted too.
// A per-layer array counts only when all its entries are equal, since one
// width is all an adapter can be checked against.
func BaseInfoFromModelInfo(mi map[string]any) (BaseInfo, error) {
	arch, _ := mi["general.architecture"].(string)
	if arch == "" {
		return BaseInfo{}, fmt.Errorf("base model_info has no general.architecture")
	}
	b := BaseInfo{Arch: arch}
	get := func(key string, required bool) (int, error) {
		v, ok := mi[arch+"."+key]
		if !ok || v == nil {
			if required {
				return 0, fmt.Errorf("base model_info has no %s.%s", arch, key)
			}
			return 0, nil
		}
		n, err := modelInfoInt(v)
		if err != nil {
			return 0, fmt.Errorf("base model_info %s.%s %v", arch, key, err)
		}
		return n, nil
	}
	var err error
	for _, f := range []struct {
		key      string
		required bool
		dst      *int
	}{
		{"embedding_length", true, &b.Embd},
		{"block_count", true, &b.Layers},
		{"attention.head_count", true, &b.Heads},
		{"attention.head_count_kv", false, &b.KVHeads},
		{"feed_forward_length", false, &b.FF},
		{"attention.key_length", false, &b.HeadDim},
		{"vocab_size", false, &b.Vocab},
	} {
		if *f.dst, err = get(f.key, f.required); err != nil {
			return BaseInfo{}, err
		}
	}
	if b.KVHeads == 0 {
		b.KVHeads = b.Heads
	}
	if b.HeadDim == 0 {
		b.HeadDim = b.Embd / b.Heads
	}
	return b, nil
}

// modelInfoInt reads one positive whole number.
func modelInfoInt(v any) (int, error) {
	if arr, ok := v.([]any); ok {
		if len(arr) == 0 {
			return 0, fmt.Errorf("is an empty list")
		}
		first, err := modelInfoInt(arr[0])
		if err != nil {
			return 0, err
		}
		for _, x := range arr[1:] {
			if n, err := modelInfoInt(x); err != nil || n != first {
				return 0, fmt.Errorf("varies per layer, which adapterd can't check adapters against")
			}
		}
		return first, nil
	}
	var f float64
	switch x := v.(type) {
	case float64:
		f = x
	case float32:
		f = float64(x)
	case int:
		f = float64(x)
	case int64:
		f = float64(x)
	case int32:
		f = float64(x)
	case uint32:
		f = float64(x)
	case uint64:
		f = float64(x)
	case json.Number:
		var err error
		if f, err = strconv.ParseFloat(string(x), 64); err != nil {
			return 0, fmt.Errorf("is %q, not a number", string(x))
		}
	default:
		return 0, fmt.Errorf("is %T, not a number", v)
	}
	if f != math.Trunc(f) || f < 1 || f > maxAdapterWidth {
		return 0, fmt.Errorf("is %v, not a positive whole number", f)
	}
	return int(f), nil
}

// adapterFamily folds architectures whose weights share one layout: Ollama
// and llama.cpp run mistral models as llama, so a mistral LoRA fits a llama
// base of the same widths (the widths are checked separately).
func adapterFamily(arch string) string {
	if arch == "mistral" {
		return "llama"
	}
	return arch
}

// adapterModules are the modules CheckBase knows the widths of.
const adapterModules = "q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj, lm_head, embed_tokens (and phi3's qkv_proj, gate_up_proj)"

// expectedWidths is a module's input and output width on base b.
func expectedWidths(module string, b BaseInfo) (in, out int, ok bool) {
	q, kv := b.Heads*b.HeadDim, b.KVHeads*b.HeadDim
	switch module {
	case "q_proj":
		return b.Embd, q, true
	case "k_proj", "v_proj":
		return b.Embd, kv, true
	case "o_proj":
		return q, b.Embd, true
	case "qkv_proj":
		return b.Embd, q + 2*kv, true
	case "gate_proj", "up_proj":
		return b.Embd, b.FF, true
	case "gate_up_proj":
		return b.Embd, 2 * b.FF, true
	case "down_proj":
		return b.FF, b.Embd, true
	case outputModule:
		return b.Embd, b.Vocab, true
	}
	return 0, 0, false
}

// CheckBase checks that the adapter fits base b, which is called name in
// Ollama: a GGUF adapter's architecture, and every pair's layer and widths.
// Ollama never checks this itself; a mismatch only shows when the model is
// loaded, or as garbage output. Errors name the adapter's weights file.
func (a *Adapter) CheckBase(name string, b BaseInfo) error {
	file := a.Dir
	if len(a.Files) > 0 {
		file = a.Files[len(a.Files)-1]
	}
	const fix = "this adapter was trained for another base; set base: to the model it was trained on"
	if a.Arch != "" && adapterFamily(a.Arch) != adapterFamily(b.Arch) {
		return adapterErr(file, "adapter is for architecture %s but base %s is %s: %s", spec.Quote(a.Arch), spec.Quote(name), spec.Quote(b.Arch), fix)
	}
	for _, f := range a.Full {
		if f.Cols != b.Embd {
			return adapterErr(file, "the full %s weight %s is [%d, %d] but base %s (%s) has hidden width %d: %s", f.Module, quoteTensor(f.Name), f.Rows, f.Cols, spec.Quote(name), b.Arch, b.Embd, fix)
		}
	}
	for _, p := range a.Pairs {
		if p.Module == "embed_tokens" {
			// The vocabulary size is checked against the base's tensor
			// when the weights are read.
			if p.Out != b.Embd {
				return adapterErr(file, "%s has hidden width %d but base %s (%s) has %d: %s", p.label(), p.Out, spec.Quote(name), b.Arch, b.Embd, fix)
			}
			continue
		}
		in, out, ok := expectedWidths(p.Module, b)
		if !ok {
			return adapterErr(file, "%s: module %s is not supported: adapterd can apply LoRA to %s only: retrain with target_modules among these", p.label(), spec.Quote(p.Module), adapterModules)
		}
		if p.Module == outputModule && out == 0 {
			out = p.Out // model_info does not give the vocabulary size; the merge checks the tensor
		}
		if p.Layer >= b.Layers {
			return adapterErr(file, "%s is for layer %d but base %s (%s) has %d layers: %s", p.label(), p.Layer, spec.Quote(name), b.Arch, b.Layers, fix)
		}
		if (in == 0 || out == 0) && b.FF == 0 {
			return adapterErr(file, "%s can't be checked: base %s (%s) does not report feed_forward_length: use a base whose model_info has it, or retrain without %s", p.label(), spec.Quote(name), b.Arch, p.Module)
		}
		if p.In != in || p.Out != out {
			return adapterErr(file, "%s has In=%d Out=%d but base %s (%s) needs In=%d Out=%d: %s", p.label(), p.In, p.Out, spec.Quote(name), b.Arch, in, out, fix)
		}
	}
	return nil
}
