package lora

import (
	"errors"
	"io"
	"io/fs"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/adapterd/adapterd/internal/gguf"
	"github.com/adapterd/adapterd/internal/quant"
	"github.com/adapterd/adapterd/internal/spec"
)

const (
	ggufSuffixA = ".weight.lora_a"
	ggufSuffixB = ".weight.lora_b"
	ggufFix     = "convert the PEFT adapter with llama.cpp's convert_lora_to_gguf.py"
)

// ggufModules maps llama.cpp's tensor names to PEFT module names, so that
// both formats are checked against a base by one table.
var ggufModules = map[string]string{
	"attn_q":      "q_proj",
	"attn_k":      "k_proj",
	"attn_v":      "v_proj",
	"attn_output": "o_proj",
	"attn_qkv":    "qkv_proj",
	"ffn_gate":    "gate_proj",
	"ffn_up":      "up_proj",
	"ffn_down":    "down_proj",
	outputStem:    outputModule,
}

// ggufModule maps a GGUF tensor name to a PEFT module name. phi3 has no
// ffn_gate: llama.cpp stores its fused gate_up_proj as ffn_up, twice as wide.
func ggufModule(arch, name string) string {
	if arch == "phi3" && name == "ffn_up" {
		return "gate_up_proj"
	}
	if m, ok := ggufModules[name]; ok {
		return m
	}
	return name
}

var ggufFloatTypes = map[gguf.TensorType]bool{gguf.TypeF32: true, gguf.TypeF16: true, gguf.TypeBF16: true}

func (a *Adapter) readGGUF(info fs.FileInfo) error {
	path := a.Files[0]
	fh, size, err := openAdapterFile(a.fdir, path, info)
	if err != nil {
		return err
	}
	defer fh.Close()
	f, err := gguf.Read(fh, size)
	switch {
	case errors.Is(err, gguf.ErrTruncated):
		return &causedError{adapterErr(path, "truncated: still copying? if not, re-copy the file (%v)", err), err}
	case errors.Is(err, gguf.ErrNotGGUF) && isGGLA(fh):
		return adapterErr(path, "an old llama.cpp finetune adapter (GGLA format), which no current tool reads: convert the adapter's PEFT files with llama.cpp's convert_lora_to_gguf.py, or drop the PEFT files here instead")
	case errors.Is(err, gguf.ErrNotGGUF):
		return adapterErr(path, "not a GGUF file (it does not start with \"GGUF\"): put a GGUF LoRA here, or %s", ggufFix)
	case err != nil:
		return adapterErr(path, "not a valid GGUF file (%v): re-copy it, or %s", err, ggufFix)
	}

	switch typ, present := f.Get("general.type"); {
	case !present || typ == "model":
		return adapterErr(path, "is a full model, not a LoRA adapter (general.type is %s): import it into Ollama as a model, and put a GGUF LoRA (general.type=adapter) here", ggufShow(typ, present))
	case typ != "adapter":
		return adapterErr(path, "general.type is %s, not \"adapter\", so this is not a LoRA adapter: put a GGUF LoRA here, or %s", ggufShow(typ, present), ggufFix)
	}
	if typ, present := f.Get("adapter.type"); typ != "lora" {
		return adapterErr(path, "adapter.type is %s; only LoRA adapters (adapter.type=lora) are supported: %s", ggufShow(typ, present), ggufFix)
	}
	alpha, ok := f.Float("adapter.lora.alpha")
	switch {
	case !ok:
		return adapterErr(path, "adapter.lora.alpha is missing or not a number; re-convert with convert_lora_to_gguf.py, which records lora_alpha")
	case math.IsNaN(alpha) || math.IsInf(alpha, 0) || alpha <= 0:
		return adapterErr(path, "adapter.lora.alpha is %v; it must be the positive lora_alpha the adapter was trained with: re-convert with convert_lora_to_gguf.py", alpha)
	}
	arch := f.Architecture()
	if arch == "" {
		return adapterErr(path, "general.architecture is missing, so the adapter can't be matched to a base: re-convert with convert_lora_to_gguf.py")
	}

	type half struct{ a, b *gguf.Tensor }
	byStem := map[string]*half{}
	for i := range f.Tensors {
		t := &f.Tensors[i]
		stem, isA := strings.CutSuffix(t.Name, ggufSuffixA)
		ok := isA
		if !ok {
			stem, ok = strings.CutSuffix(t.Name, ggufSuffixB)
		}
		if !ok {
			return adapterErr(path, "tensor %s is not a LoRA weight (blk.N.<name>.weight.lora_a or .lora_b); only the layers' linear modules can be adapted: %s, with only linear layers in target_modules", quoteTensor(t.Name), ggufFix)
		}
		h := byStem[stem]
		if h == nil {
			h = &half{}
			byStem[stem] = h
		}
		if isA {
			h.a = t
		} else {
			h.b = t
		}
	}
	if len(byStem) == 0 {
		return adapterErr(path, "holds no LoRA tensors: %s", ggufFix)
	}
	stems := make([]string, 0, len(byStem))
	for s := range byStem {
		stems = append(stems, s)
	}
	sort.Strings(stems)
	rank := 0
	a.ggufF32 = true
	seen := map[[2]string]bool{}
	for _, stem := range stems {
		h := byStem[stem]
		switch {
		case h.b == nil:
			return adapterErr(path, "tensor %s has no matching %s: %s", quoteTensor(h.a.Name), quoteTensor(stem+ggufSuffixB), ggufFix)
		case h.a == nil:
		default:
			a.ggufF32 = a.ggufF32 && h.a.Type == gguf.TypeF32 && h.b.Type == gguf.TypeF32
		}
		switch {
		case h.a == nil:
			return adapterErr(path, "tensor %s has no matching %s: %s", quoteTensor(h.b.Name), quoteTensor(stem+ggufSuffixA), ggufFix)
		}
		if stem == "token_embd" {
			// llama.cpp's layout for the embedding: lora_a ne=[r, vocab],
			// lora_b ne=[r, hidden] (see the note on the token embedding in ggufio.go).
			if len(h.a.Shape) != 2 || len(h.b.Shape) != 2 || h.a.Shape[0] != h.b.Shape[0] || h.a.Shape[0] > maxAdapterRank || h.a.Shape[1] > maxAdapterWidth || h.b.Shape[1] > maxAdapterWidth {
				return adapterErr(path, "tensors %s %v and %s %v do not form a token embedding LoRA (want lora_a [r, vocab] and lora_b [r, hidden] in ggml order): %s",
					quoteTensor(h.a.Name), h.a.Shape, quoteTensor(h.b.Name), h.b.Shape, ggufFix)
			}
			for _, t := range []*gguf.Tensor{h.a, h.b} {
				if !ggufFloatTypes[t.Type] && !quant.CanDequantize(t.Type) {
					return adapterErr(path, "tensor %s is %s, which adapterd cannot read: re-convert with convert_lora_to_gguf.py --outtype f16 (or q8_0)", quoteTensor(t.Name), t.Type)
				}
			}
			r := int(h.a.Shape[0])
			rank = max(rank, r)
			a.Pairs = append(a.Pairs, Pair{Layer: -1, Module: "embed_tokens", Rank: r, In: int(h.a.Shape[1]), Out: int(h.b.Shape[1]), DType: h.a.Type.String(), A: h.a.Name, B: h.b.Name})
			continue
		}
		layer, name, ok := ggufLayerName(stem)
		if !ok && stem == outputStem { // output.go
			layer, name, ok = -1, outputStem, true
		}
		if !ok {
			return adapterErr(path, "tensor %s is not in a transformer layer (blk.N.<name>); only the layers' linear modules can be adapted: %s, with only linear layers in target_modules", quoteTensor(h.a.Name), ggufFix)
		}
		for _, t := range []*gguf.Tensor{h.a, h.b} {
			// convert_lora_to_gguf.py --outtype q8_0 writes Q8_0; llama.cpp
			// multiplies with any type, and a merge dequantizes.
			if !ggufFloatTypes[t.Type] && !quant.CanDequantize(t.Type) {
				return adapterErr(path, "tensor %s is %s, which adapterd cannot read: re-convert with convert_lora_to_gguf.py --outtype f16 (or q8_0)", quoteTensor(t.Name), t.Type)
			}
		}
		// ggml order: lora_a is ne=[in, r], lora_b is ne=[r, out].
		if len(h.a.Shape) != 2 || len(h.b.Shape) != 2 || h.a.Shape[1] != h.b.Shape[0] {
			return adapterErr(path, "tensors %s %v and %s %v do not form a LoRA pair (want lora_a [in, r] and lora_b [r, out] in ggml order): %s",
				quoteTensor(h.a.Name), h.a.Shape, quoteTensor(h.b.Name), h.b.Shape, ggufFix)
		}
		r, in, out := h.a.Shape[1], h.a.Shape[0], h.b.Shape[1]
		if r > maxAdapterRank || in > maxAdapterWidth || out > maxAdapterWidth {
			return adapterErr(path, "tensors %s %v and %s %v have impossible sizes: %s", quoteTensor(h.a.Name), h.a.Shape, quoteTensor(h.b.Name), h.b.Shape, ggufFix)
		}
		// Each pair has its own rank, as llama.cpp scales each by
		// alpha/ne[0] of its lora_b (what PEFT's rank_pattern converts to).
		rank = max(rank, int(r))
		module := ggufModule(arch, name)
		key := [2]string{strconv.Itoa(layer), module}
		if seen[key] {
			return adapterErr(path, "two tensor pairs adapt %s of layer %d (the second is %s): %s", module, layer, quoteTensor(h.a.Name), ggufFix)
		}
		seen[key] = true
		a.Pairs = append(a.Pairs, Pair{Layer: layer, Module: module, Rank: int(r), In: int(in), Out: int(out), DType: h.a.Type.String(), A: h.a.Name, B: h.b.Name})
	}
	a.Arch, a.Rank, a.Alpha = arch, rank, alpha
	return nil
}

// ggufLayerName splits "blk.3.attn_q" into 3 and "attn_q".
func ggufLayerName(stem string) (int, string, bool) {
	rest, ok := strings.CutPrefix(stem, "blk.")
	if !ok {
		return 0, "", false
	}
	num, name, ok := strings.Cut(rest, ".")
	if !ok || name == "" {
		return 0, "", false
	}
	n, err := strconv.Atoi(num)
	if err != nil || n < 0 || n > maxAdapterWidth || strconv.Itoa(n) != num {
		return 0, "", false
	}
	return n, name, true
}

// ggufShow shows a metadata value in a message.
func ggufShow(v any, present bool) string {
	switch s, isStr := v.(string); {
	case !present:
		return "not set"
	case isStr:
		return spec.Quote(s)
	}
	return "not a string"
}

// isGGLA reports whether r starts with the magic of the GGLA format that
// llama.cpp's old finetune wrote ("ggla", stored little-endian as "algg").
func isGGLA(r io.ReaderAt) bool {
	var b [4]byte
	if _, err := r.ReadAt(b[:], 0); err != nil {
		return false
	}
	return string(b[:]) == "algg" || string(b[:]) == "ggla"
}
