package lora

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/adapterd/adapterd/internal/safetensors"
	"github.com/adapterd/adapterd/internal/spec"
)

const (
	// maxAdapterConfig bounds the read: PEFT writes about 1 KB, and a huge
	// file here is a mistake, not a config.
	maxAdapterConfig = 1 << 20
	// maxAdapterRank is far above any trained LoRA; beyond it r is a typo.
	maxAdapterRank = 65536
	// maxAdapterWidth keeps widths and layer numbers in int on every
	// platform; no model comes near it.
	maxAdapterWidth = 1 << 30

	peftPrefix  = "base_model.model."
	peftSuffixA = ".lora_A.weight"
	peftSuffixB = ".lora_B.weight"
)

// floatDTypes are the storage types Ollama's converter and adapterd's merge
// read. Anything else is a quantized leftover.
var floatDTypes = map[string]bool{"F32": true, "F16": true, "BF16": true}

const quantizedFix = "quantized/QLoRA leftovers can't be used: save the adapter in float (no merge_and_unload needed: model = model.to(torch.float16), then model.save_pretrained(dir))"

func (a *Adapter) readPEFT(cfgInfo, modelInfo fs.FileInfo) error {
	cfgPath, modelPath := a.Files[0], a.Files[1]
	data, err := readAdapterConfig(a.fdir, cfgPath, cfgInfo)
	if err != nil {
		return err
	}
	cfg, err := parsePEFTConfig(cfgPath, data)
	if err != nil {
		return err
	}
	fh, size, err := openAdapterFile(a.fdir, modelPath, modelInfo)
	if err != nil {
		return err
	}
	defer fh.Close()
	st, err := safetensors.Read(fh, size)
	if err != nil {
		if errors.Is(err, safetensors.ErrTruncated) {
			return &causedError{adapterErr(modelPath, "truncated: still copying? if not, re-copy the file (%v)", err), err}
		}
		return adapterErr(modelPath, "not a valid safetensors file (%v): re-save the adapter with model.save_pretrained(dir)", err)
	}
	pairs, full, err := peftPairs(modelPath, st.Tensors, cfg)
	if err != nil {
		return err
	}
	a.Rank, a.Alpha, a.Pairs, a.Full = 0, cfg.alpha, pairs, full
	for _, p := range pairs {
		a.Rank = max(a.Rank, p.Rank)
	}
	return nil
}

func readAdapterConfig(dir *os.File, path string, fi fs.FileInfo) ([]byte, error) {
	fh, size, err := openAdapterFile(dir, path, fi)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	if size > maxAdapterConfig {
		return nil, adapterErr(path, "is %d bytes, far too large for a PEFT adapter config: put the adapter's own adapter_config.json here", size)
	}
	data, err := io.ReadAll(io.LimitReader(fh, maxAdapterConfig+1))
	if err != nil {
		return nil, adapterErr(path, "cannot read: %s", osErrText(err))
	}
	if len(data) > maxAdapterConfig {
		return nil, &causedError{adapterErr(path, "grew while adapterd read it; still copying? if not, check what writes to this folder"), errAdapterChanged}
	}
	return data, nil
}

func jsonNull(raw json.RawMessage) bool { return string(bytes.TrimSpace(raw)) == "null" }

// jsonNumber returns the literal of a JSON number. raw comes from a
// successful decode, so a leading digit or '-' means the whole token is a
// valid number.
func jsonNumber(raw json.RawMessage) (string, bool) {
	t := bytes.TrimSpace(raw)
	if len(t) == 0 || (t[0] != '-' && (t[0] < '0' || t[0] > '9')) {
		return "", false
	}
	return string(t), true
}

func jsonBoolField(m map[string]json.RawMessage, key string) (bool, error) {
	raw, ok := m[key]
	if !ok || jsonNull(raw) {
		return false, nil
	}
	var b bool
	if json.Unmarshal(raw, &b) != nil {
		return false, fmt.Errorf("%s is %s; it must be true or false", key, jsonShow(raw))
	}
	return b, nil
}

// jsonShow echoes a JSON value compactly and briefly.
func jsonShow(raw json.RawMessage) string {
	var b bytes.Buffer
	if json.Compact(&b, raw) != nil {
		return spec.Quote(string(raw))
	}
	s := b.String()
	const max = 60
	if len(s) > max {
		cut := max
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "..."
	}
	// Compact JSON has no raw newlines, but strings may hold U+2028 and
	// friends, which the one-line rule also forbids; *spec.Error maps them.
	return s
}

// jsonLine is the 1-based line of byte offset off.
func jsonLine(data []byte, off int64) int {
	off = min(max(off, 0), int64(len(data)))
	return 1 + bytes.Count(data[:off], []byte{'\n'})
}

// jsonPosition turns a json.SyntaxError offset, which counts the bad byte
// itself, into the 1-based line and column of that byte.
func jsonPosition(data []byte, offset int64) (line, col int) {
	pos := min(max(offset-1, 0), int64(len(data)))
	line = jsonLine(data, pos)
	col = int(pos) - bytes.LastIndexByte(data[:pos], '\n')
	return line, col
}

// peftPairs groups the safetensors tensors into LoRA pairs and full
// weights. Names must be what PEFT's save_pretrained writes; anything else
// is refused by name so the user knows which module to drop from training.
// Each tensor must be one the config says was trained (target_modules,
// layers_to_transform, modules_to_save), with the rank it says
// (r, rank_pattern): the tensors tell what was trained, and the config must
// agree, or the two files are not one adapter.
func peftPairs(path string, ts []safetensors.Tensor, cfg *peftSettings) ([]Pair, []FullWeight, error) {
	type half struct {
		a, b  *safetensors.Tensor
		embed bool // lora_embedding_A/B
	}
	byStem := map[string]*half{}
	var full []FullWeight
	for i := range ts {
		t := &ts[i]
		stem, isA, embed, ok := peftLoRAName(t.Name)
		if !ok {
			fw, isFull, err := peftFullWeight(path, t, cfg)
			if err != nil {
				return nil, nil, err
			}
			if !isFull {
				return nil, nil, adapterErr(path, "tensor %s %s", quoteTensor(t.Name), peftNameProblem(t.Name))
			}
			full = append(full, fw)
			continue
		}
		h := byStem[stem]
		if h == nil {
			h = &half{embed: embed}
			byStem[stem] = h
		}
		if h.embed != embed {
			return nil, nil, adapterErr(path, "tensor %s mixes lora_A/lora_B and lora_embedding_A/B names for one module: re-save the adapter with model.save_pretrained(dir)", quoteTensor(t.Name))
		}
		if isA {
			h.a = t
		} else {
			h.b = t
		}
	}
	if len(byStem) == 0 && len(full) == 0 {
		return nil, nil, adapterErr(path, "holds no LoRA tensors: save the trained adapter with model.save_pretrained(dir)")
	}
	stems := make([]string, 0, len(byStem))
	for s := range byStem {
		stems = append(stems, s)
	}
	sort.Strings(stems)
	seen := map[[2]string]string{}
	pairs := make([]Pair, 0, len(stems))
	for _, stem := range stems {
		h := byStem[stem]
		sufA, sufB := peftSuffixA, peftSuffixB
		if h.embed {
			sufA, sufB = peftEmbedA, peftEmbedB
		}
		switch {
		case h.b == nil:
			return nil, nil, adapterErr(path, "tensor %s has no matching %s: re-save the adapter with model.save_pretrained(dir)", quoteTensor(h.a.Name), quoteTensor(stem+sufB))
		case h.a == nil:
			return nil, nil, adapterErr(path, "tensor %s has no matching %s: re-save the adapter with model.save_pretrained(dir)", quoteTensor(h.b.Name), quoteTensor(stem+sufA))
		}
		if !strings.HasPrefix(stem, peftPrefix) {
			return nil, nil, adapterErr(path, "tensor %s does not start with %q as PEFT's save_pretrained writes it: re-save the adapter with model.save_pretrained(dir)", quoteTensor(h.a.Name), peftPrefix)
		}
		key := strings.TrimPrefix(stem, peftPrefix)
		layer, module := -1, lastDotPart(key)
		if h.embed {
			if module != "embed_tokens" {
				return nil, nil, adapterErr(path, "tensor %s is a LoRA on the embedding %s; adapterd applies embedding LoRA to embed_tokens only: retrain without %s in target_modules", quoteTensor(h.a.Name), spec.Quote(module), module)
			}
		} else {
			var ok bool
			layer, module, ok = peftLayerModule(key)
			if !ok && key == outputModule { // output.go
				layer, module, ok = -1, outputModule, true
			}
			if !ok {
				return nil, nil, adapterErr(path, "tensor %s is not in a transformer layer (no layers.N in its name); only the layers' linear modules, lm_head and embed_tokens can be adapted: retrain with target_modules such as q_proj, v_proj", quoteTensor(h.a.Name))
			}
			if layer > maxAdapterWidth {
				return nil, nil, adapterErr(path, "tensor %s names layer %d, which no model has", quoteTensor(h.a.Name), layer)
			}
		}
		if err := cfg.checkTargeted(path, h.a.Name, key, !h.embed && module != outputModule); err != nil {
			return nil, nil, err
		}
		for _, t := range []*safetensors.Tensor{h.a, h.b} {
			if !floatDTypes[t.DType] {
				return nil, nil, adapterErr(path, "tensor %s is %s; %s", quoteTensor(t.Name), t.DType, quantizedFix)
			}
		}
		if len(h.a.Shape) != 2 || len(h.b.Shape) != 2 {
			return nil, nil, adapterErr(path, "tensors %s %v and %s %v must be 2-D: lora_A [r, in] and lora_B [out, r]: re-save the adapter with model.save_pretrained(dir)",
				quoteTensor(h.a.Name), h.a.Shape, quoteTensor(h.b.Name), h.b.Shape)
		}
		rank := cfg.rankFor(key)
		if h.a.Shape[0] != int64(rank) || h.b.Shape[1] != int64(rank) {
			where := fmt.Sprintf("r=%d", rank)
			if rank != cfg.rank {
				where = fmt.Sprintf("rank_pattern gives %s r=%d", key, rank)
			}
			return nil, nil, adapterErr(path, "tensors %s %v and %s %v have rank %d and %d but adapter_config.json says %s: set r (or rank_pattern) to the rank the adapter was trained with",
				quoteTensor(h.a.Name), h.a.Shape, quoteTensor(h.b.Name), h.b.Shape, h.a.Shape[0], h.b.Shape[1], where)
		}
		in, out := h.a.Shape[1], h.b.Shape[0]
		if in < 1 || out < 1 || in > maxAdapterWidth || out > maxAdapterWidth {
			return nil, nil, adapterErr(path, "tensors %s %v and %s %v have impossible widths: re-save the adapter with model.save_pretrained(dir)",
				quoteTensor(h.a.Name), h.a.Shape, quoteTensor(h.b.Name), h.b.Shape)
		}
		dup := [2]string{strconv.Itoa(layer), module}
		if prev, ok := seen[dup]; ok {
			return nil, nil, adapterErr(path, "tensors %s and %s both adapt %s of layer %d; adapterd supports one %s per layer", quoteTensor(prev), quoteTensor(h.a.Name), module, layer, module)
		}
		seen[dup] = h.a.Name
		pairs = append(pairs, Pair{Layer: layer, Module: module, Rank: rank, In: int(in), Out: int(out), DType: h.a.DType, A: h.a.Name, B: h.b.Name})
	}
	sort.Slice(full, func(i, j int) bool { return full[i].Module < full[j].Module })
	for i := 1; i < len(full); i++ {
		if full[i].Module == full[i-1].Module {
			return nil, nil, adapterErr(path, "tensors %s and %s are both the full %s weight: re-save the adapter with model.save_pretrained(dir)", quoteTensor(full[i-1].Name), quoteTensor(full[i].Name), full[i].Module)
		}
	}
	for _, f := range full {
		if _, ok := seen[[2]string{"-1", f.Module}]; ok {
			return nil, nil, adapterErr(path, "tensor %s replaces %s, which the adapter also adapts with LoRA: re-save the adapter with model.save_pretrained(dir)", quoteTensor(f.Name), f.Module)
		}
	}
	return pairs, full, nil
}

const (
	peftEmbedA = ".lora_embedding_A"
	peftEmbedB = ".lora_embedding_B"
)

// peftLoRAName splits a LoRA tensor name into its module stem and side: a
// linear layer's "<stem>.lora_A.weight", or an embedding's
// "<stem>.lora_embedding_A" (a parameter, so PEFT saves it without .weight).
func peftLoRAName(name string) (stem string, isA, embed, ok bool) {
	for _, s := range []struct {
		suf        string
		isA, embed bool
	}{{peftSuffixA, true, false}, {peftSuffixB, false, false}, {peftEmbedA, true, true}, {peftEmbedB, false, true}} {
		if stem, ok := strings.CutSuffix(name, s.suf); ok {
			return stem, s.isA, s.embed, true
		}
	}
	return "", false, false, false
}

// peftFullWeight recognizes a module saved whole (modules_to_save): PEFT's
// save_pretrained writes base_model.model.lm_head.weight and
// base_model.model.model.embed_tokens.weight; a state dict saved by hand
// has ".modules_to_save.default" before ".weight". isFull is false for any
// other name.
func peftFullWeight(path string, t *safetensors.Tensor, cfg *peftSettings) (fw FullWeight, isFull bool, err error) {
	rest, ok := strings.CutPrefix(t.Name, peftPrefix)
	if !ok {
		return fw, false, nil
	}
	rest, ok = strings.CutSuffix(rest, ".weight")
	if !ok {
		return fw, false, nil
	}
	rest = strings.TrimSuffix(rest, ".modules_to_save.default")
	module := lastDotPart(rest)
	if _, ok := fullWeightModules[module]; !ok {
		return fw, false, nil
	}
	listed := false
	for _, m := range cfg.modulesToSave {
		listed = listed || strings.HasSuffix(rest, m)
	}
	switch {
	case !listed:
		return fw, true, adapterErr(path, "tensor %s is a full %s weight, but modules_to_save in adapter_config.json does not name %s: copy both files from one save_pretrained", quoteTensor(t.Name), module, module)
	case !floatDTypes[t.DType]:
		return fw, true, adapterErr(path, "tensor %s is %s; %s", quoteTensor(t.Name), t.DType, quantizedFix)
	case len(t.Shape) != 2 || t.Shape[0] < 1 || t.Shape[1] < 1 || t.Shape[0] > maxAdapterWidth || t.Shape[1] > maxAdapterWidth:
		return fw, true, adapterErr(path, "tensor %s has shape %v; a full %s weight is [vocab, hidden]: re-save the adapter with model.save_pretrained(dir)", quoteTensor(t.Name), t.Shape, module)
	}
	return FullWeight{Module: module, Name: t.Name, Rows: int(t.Shape[0]), Cols: int(t.Shape[1]), DType: t.DType}, true, nil
}

// peftLayerModule finds "layers.N" in a tensor stem and the module name (the
// last component) after it: "model.layers.3.self_attn.q_proj" -> 3, "q_proj".
func peftLayerModule(stem string) (layer int, module string, ok bool) {
	parts := strings.Split(stem, ".")
	for i := 0; i+2 < len(parts); i++ {
		if parts[i] != "layers" {
			continue
		}
		n, err := strconv.Atoi(parts[i+1])
		if err != nil || n < 0 || strconv.Itoa(n) != parts[i+1] {
			continue
		}
		module = parts[len(parts)-1]
		return n, module, module != ""
	}
	return 0, "", false
}

// peftNameProblem explains a tensor name that is not a plain lora_A/lora_B
// weight, naming the training or saving setting that produced it.
func peftNameProblem(name string) string {
	lora := strings.Contains(name, ".lora_A.") || strings.Contains(name, ".lora_B.")
	switch {
	case lora && strings.HasSuffix(name, ".bias"):
		return "is a LoRA bias, which Ollama does not support: retrain with lora_bias=False"
	case lora && strings.HasSuffix(name, ".weight"):
		return "has an adapter name in it (such as .lora_A.default.weight); PEFT's model.save_pretrained(dir) leaves it out: save with that instead of saving the state dict yourself"
	case strings.Contains(name, "lora_embedding_"):
		return "is an embedding LoRA not saved as PEFT's save_pretrained writes it (<module>.lora_embedding_A): save with that instead of saving the state dict yourself"
	case strings.Contains(name, "lora_magnitude_vector"):
		return "is a DoRA magnitude, which Ollama does not support: retrain with use_dora=False"
	}
	return "is not a LoRA A/B weight, nor a full lm_head or embed_tokens weight (modules_to_save): retrain with only linear layers and embed_tokens in target_modules, and only lm_head and embed_tokens in modules_to_save"
}
