package lora

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
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
	data, err := readAdapterConfig(cfgPath, cfgInfo)
	if err != nil {
		return err
	}
	rank, alpha, err := parsePEFTConfig(cfgPath, data)
	if err != nil {
		return err
	}
	fh, size, err := openAdapterFile(modelPath, modelInfo)
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
	pairs, err := peftPairs(modelPath, st.Tensors, rank)
	if err != nil {
		return err
	}
	a.Rank, a.Alpha, a.Pairs = rank, float64(alpha), pairs
	return nil
}

func readAdapterConfig(path string, fi fs.FileInfo) ([]byte, error) {
	fh, size, err := openAdapterFile(path, fi)
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

// parsePEFTConfig checks adapter_config.json and returns r and lora_alpha.
// adapterd converts PEFT files itself and never hands them to Ollama, so
// what Ollama's converter would reject (a float lora_alpha, rsLoRA, an
// alpha_pattern) is fine: Adapter.Weights applies them. Unknown keys are
// fine too; PEFT writes dozens that do not change the weights' meaning.
func parsePEFTConfig(path string, data []byte) (rank int, alpha float64, err error) {
	fail := func(format string, args ...any) (int, float64, error) {
		return 0, 0, adapterErr(path, format, args...)
	}
	if bytes.HasPrefix(data, []byte("\xef\xbb\xbf")) {
		return fail("starts with a byte order mark (BOM), which Ollama's JSON parser rejects: save the file as UTF-8 without BOM")
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &se) && se.Offset >= int64(len(data)):
			// A JSON text cut short is what a copy in progress looks like,
			// like a truncated safetensors file.
			return 0, 0, &causedError{&spec.Error{File: path, Line: jsonLine(data, int64(len(data))), Msg: "the JSON ends early: still copying? if not, fix the file"}, errConfigEndsEarly}
		case errors.As(err, &se):
			line, col := jsonPosition(data, se.Offset)
			return 0, 0, &spec.Error{File: path, Line: line, Msg: printable(fmt.Sprintf("not valid JSON at column %d (byte %d): %v: fix the syntax", col, se.Offset, se))}
		case errors.As(err, &te):
			return fail("must be a JSON object as PEFT writes it, found a JSON %s: put the adapter's own adapter_config.json here", te.Value)
		}
		return fail("not valid JSON: %v: fix the syntax", err)
	}
	if m == nil {
		return fail("must be a JSON object as PEFT writes it, found null: put the adapter's own adapter_config.json here")
	}

	raw, ok := m["peft_type"]
	var pt string
	switch {
	case !ok || jsonNull(raw):
		return fail(`peft_type is missing, so this is not a PEFT config: save the adapter with PEFT's model.save_pretrained(dir), which writes "peft_type": "LORA"`)
	case json.Unmarshal(raw, &pt) != nil:
		return fail(`peft_type is %s; it must be the string "LORA"`, jsonShow(raw))
	case !strings.EqualFold(pt, "LORA"):
		return fail(`peft_type is %s; only LoRA adapters (peft_type "LORA") are supported: train with PEFT's LoraConfig`, spec.Quote(pt))
	}

	// Each of these changes what the weights mean in a way Ollama ignores,
	// so the created model would not behave like the trained adapter.
	refusals := []struct{ key, msg string }{
		{"use_dora", "use_dora is true; DoRA adapters are not supported by Ollama: retrain with use_dora=False"},
		{"fan_in_fan_out", "fan_in_fan_out is true (Conv1D weights, as in GPT-2); Ollama needs lora_A as [r, in] and lora_B as [out, r]: this layout is not supported"},
		{"lora_bias", "lora_bias is true; LoRA biases are not supported by Ollama: retrain with lora_bias=False"},
	}
	for _, r := range refusals {
		on, err := jsonBoolField(m, r.key)
		if err != nil {
			return fail("%v", err)
		}
		if on {
			return fail("%s", r.msg)
		}
	}
	if raw, ok := m["bias"]; ok && !jsonNull(raw) {
		var b string
		if json.Unmarshal(raw, &b) != nil {
			return fail(`bias is %s; it must be a string such as "none"`, jsonShow(raw))
		}
		if b != "none" {
			return fail(`bias is %s; trained biases are full weights that an adapter can't carry into Ollama: retrain with bias="none"`, spec.Quote(b))
		}
	}
	if raw, ok := m["modules_to_save"]; ok && !jsonNull(raw) {
		var mods []json.RawMessage
		if json.Unmarshal(raw, &mods) != nil {
			return fail("modules_to_save is %s; it must be a list of module names or null", jsonShow(raw))
		}
		if len(mods) > 0 {
			return fail("modules_to_save is %s; those modules are saved as full weights, which an adapter can't carry into Ollama: retrain without modules_to_save", jsonShow(raw))
		}
	}
	// alpha_pattern only changes the scale, which the conversion applies
	// per module; rank_pattern changes the tensors' shapes, which every
	// check here assumes are one r.
	for _, key := range []string{"rank_pattern"} {
		raw, ok := m[key]
		if !ok || jsonNull(raw) {
			continue
		}
		var pat map[string]json.RawMessage
		if json.Unmarshal(raw, &pat) != nil {
			return fail("%s is %s; it must be an object", key, jsonShow(raw))
		}
		if len(pat) > 0 {
			return fail("%s is %s; adapterd needs one r and one lora_alpha for every module: retrain without %s", key, jsonShow(raw), key)
		}
	}

	// Ollama never reads r, so a whole number written as 8.0 is fine; the
	// tensors are checked against it.
	raw, ok = m["r"]
	if !ok || jsonNull(raw) {
		return fail("r is missing; set it to the adapter's LoRA rank, the first dimension of each lora_A tensor")
	}
	lit, isNum := jsonNumber(raw)
	if !isNum {
		return fail("r is %s; it must be a number: the LoRA rank", jsonShow(raw))
	}
	if f, err := strconv.ParseFloat(lit, 64); err != nil || f != math.Trunc(f) || f < 1 || f > maxAdapterRank {
		return fail("r is %s; it must be a whole number from 1 to %d: set it to the LoRA rank", shortNum(lit), maxAdapterRank)
	} else {
		rank = int(f)
	}

	raw, ok = m["lora_alpha"]
	if !ok || jsonNull(raw) {
		return fail("lora_alpha is missing; set it to the value the adapter was trained with (PEFT's default is 8)")
	}
	lit, isNum = jsonNumber(raw)
	if !isNum {
		var s string
		if json.Unmarshal(raw, &s) == nil {
			return fail("lora_alpha is the string %s; it must be a number: write it without quotes", spec.Quote(s))
		}
		return fail("lora_alpha is %s; it must be a number: set it to the value the adapter was trained with", jsonShow(raw))
	}
	alpha, err = strconv.ParseFloat(lit, 64)
	if err != nil || math.IsInf(alpha, 0) || math.IsNaN(alpha) || alpha <= 0 || alpha > math.MaxUint32 {
		return fail("lora_alpha is %s; it must be a positive number up to %d: set it to the value the adapter was trained with", shortNum(lit), uint32(math.MaxUint32))
	}
	return rank, alpha, nil
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

// peftPairs groups the safetensors tensors into LoRA pairs. Names must be
// what PEFT's save_pretrained writes, because that is what Ollama's
// converter rewrites into GGUF names; anything else is refused by name so the
// user knows which module to drop from training.
func peftPairs(path string, ts []safetensors.Tensor, rank int) ([]Pair, error) {
	type half struct{ a, b *safetensors.Tensor }
	byStem := map[string]*half{}
	for i := range ts {
		t := &ts[i]
		stem, isA := strings.CutSuffix(t.Name, peftSuffixA)
		ok := isA
		if !ok {
			stem, ok = strings.CutSuffix(t.Name, peftSuffixB)
		}
		if !ok {
			return nil, adapterErr(path, "tensor %s %s", quoteTensor(t.Name), peftNameProblem(t.Name))
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
		return nil, adapterErr(path, "holds no LoRA tensors: save the trained adapter with model.save_pretrained(dir)")
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
		switch {
		case h.b == nil:
			return nil, adapterErr(path, "tensor %s has no matching %s: re-save the adapter with model.save_pretrained(dir)", quoteTensor(h.a.Name), quoteTensor(stem+peftSuffixB))
		case h.a == nil:
			return nil, adapterErr(path, "tensor %s has no matching %s: re-save the adapter with model.save_pretrained(dir)", quoteTensor(h.b.Name), quoteTensor(stem+peftSuffixA))
		}
		if !strings.HasPrefix(stem, peftPrefix) {
			return nil, adapterErr(path, "tensor %s does not start with %q as PEFT's save_pretrained writes it: re-save the adapter with model.save_pretrained(dir)", quoteTensor(h.a.Name), peftPrefix)
		}
		layer, module, ok := peftLayerModule(strings.TrimPrefix(stem, peftPrefix))
		if !ok && strings.TrimPrefix(stem, peftPrefix) == outputModule { // output.go
			layer, module, ok = -1, outputModule, true
		}
		if !ok {
			return nil, adapterErr(path, "tensor %s is not in a transformer layer (no layers.N in its name); only the layers' linear modules can be adapted: retrain with target_modules such as q_proj, v_proj", quoteTensor(h.a.Name))
		}
		if layer > maxAdapterWidth {
			return nil, adapterErr(path, "tensor %s names layer %d, which no model has", quoteTensor(h.a.Name), layer)
		}
		for _, t := range []*safetensors.Tensor{h.a, h.b} {
			if !floatDTypes[t.DType] {
				return nil, adapterErr(path, "tensor %s is %s; %s", quoteTensor(t.Name), t.DType, quantizedFix)
			}
		}
		if len(h.a.Shape) != 2 || len(h.b.Shape) != 2 {
			return nil, adapterErr(path, "tensors %s %v and %s %v must be 2-D: lora_A [r, in] and lora_B [out, r]: re-save the adapter with model.save_pretrained(dir)",
				quoteTensor(h.a.Name), h.a.Shape, quoteTensor(h.b.Name), h.b.Shape)
		}
		if h.a.Shape[0] != int64(rank) || h.b.Shape[1] != int64(rank) {
			return nil, adapterErr(path, "tensors %s %v and %s %v have rank %d and %d but adapter_config.json has r=%d: set r to the rank the adapter was trained with",
				quoteTensor(h.a.Name), h.a.Shape, quoteTensor(h.b.Name), h.b.Shape, h.a.Shape[0], h.b.Shape[1], rank)
		}
		in, out := h.a.Shape[1], h.b.Shape[0]
		if in < 1 || out < 1 || in > maxAdapterWidth || out > maxAdapterWidth {
			return nil, adapterErr(path, "tensors %s %v and %s %v have impossible widths: re-save the adapter with model.save_pretrained(dir)",
				quoteTensor(h.a.Name), h.a.Shape, quoteTensor(h.b.Name), h.b.Shape)
		}
		key := [2]string{strconv.Itoa(layer), module}
		if prev, dup := seen[key]; dup {
			return nil, adapterErr(path, "tensors %s and %s both adapt %s of layer %d; adapterd supports one %s per layer", quoteTensor(prev), quoteTensor(h.a.Name), module, layer, module)
		}
		seen[key] = h.a.Name
		pairs = append(pairs, Pair{Layer: layer, Module: module, In: int(in), Out: int(out), DType: h.a.DType, A: h.a.Name, B: h.b.Name})
	}
	return pairs, nil
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
		return "is a LoRA on embeddings, which Ollama does not support: retrain without embed_tokens in target_modules"
	case strings.Contains(name, "lora_magnitude_vector"):
		return "is a DoRA magnitude, which Ollama does not support: retrain with use_dora=False"
	}
	return "is not a LoRA A/B weight (full weights such as embed_tokens or lm_head can't be carried by an adapter): retrain without modules_to_save, and only linear layers in target_modules"
}
