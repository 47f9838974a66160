package lora

import (
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/adapterd/adapterd/internal/layout"
	"github.com/adapterd/adapterd/internal/safetensors"
	"github.com/adapterd/adapterd/internal/tensor"
)

const (
	peftConfigName  = layout.PEFTConfig
	peftWeightsName = layout.PEFTWeights
	maxPEFTConfig   = 1 << 20
)

func readPEFTSettings(open openFunc, path string) (*peftSettings, error) {
	fh, _, err := open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	data, err := io.ReadAll(io.LimitReader(fh, maxPEFTConfig+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	if len(data) > maxPEFTConfig {
		return nil, fmt.Errorf("%s: larger than %d bytes; not a PEFT config", path, maxPEFTConfig)
	}
	return parsePEFTConfig(path, data)
}

// peftName is a parsed PEFT tensor name.
type peftName struct {
	module string // path inside the model, e.g. model.layers.0.self_attn.q_proj
	layer  int
	key    string // "self_attn.q_proj"
	ab     byte   // 'A' or 'B'
}

// parsePEFTName splits base_model.model.model.layers.N.<parent>.<module>.
// lora_A.weight (or lora_B; an adapter name such as .default before .weight
// is tolerated). A "language_model." segment, as multimodal Gemma 3 and
// Mistral 3 checkpoints nest their text model, is dropped the way Ollama's
// converters drop it.
func parsePEFTName(name string) (peftName, bool) {
	var p peftName
	rest, ok := strings.CutPrefix(name, "base_model.model.")
	if !ok {
		return p, false
	}
	var module string
	for _, suf := range []string{".lora_A.weight", ".lora_B.weight", ".lora_A.default.weight", ".lora_B.default.weight"} {
		if m, ok := strings.CutSuffix(rest, suf); ok {
			module, p.ab = m, suf[6]
			break
		}
	}
	if module == "" {
		return p, false
	}
	p.module = module
	flat := strings.ReplaceAll(module, "language_model.", "")
	if flat == outputModule { // output.go
		p.layer, p.key = -1, outputModule
		return p, true
	}
	after, ok := strings.CutPrefix(flat, "model.layers.")
	if !ok {
		return p, false
	}
	num, key, ok := strings.Cut(after, ".")
	if !ok {
		return p, false
	}
	n, err := strconv.Atoi(num)
	if err != nil || n < 0 || strconv.Itoa(n) != num {
		return p, false
	}
	p.layer, p.key = n, key
	return p, true
}

// ReadPEFT reads adapter_config.json and adapter_model.safetensors from dir
// and maps the weights onto base: PEFT module names become GGUF tensor names,
// shapes are checked against the base tensors, and for llama-family bases the
// rows of B for q_proj/k_proj get the RoPE permutation (n_head for q,
// n_head_kv for k) that the base's own q/k weights got at conversion.
// The result's Arch is base.Arch.
func ReadPEFT(dir string, base BaseInfo) (*Weights, error) {
	return readPEFT(openPlain, dir, base)
}

func readPEFT(open openFunc, dir string, base BaseInfo) (*Weights, error) {
	rule, ok := archRules[base.Arch]
	if !ok {
		return nil, fmt.Errorf("base architecture %q is not supported for PEFT adapters (supported: %s)", base.Arch, strings.Join(SupportedArchitectures(), ", "))
	}
	cfg, err := readPEFTSettings(open, filepath.Join(dir, peftConfigName))
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, peftWeightsName)
	fh, size, err := open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	sf, err := safetensors.Read(fh, size)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	fail := func(format string, args ...any) (*Weights, error) {
		return nil, fmt.Errorf("%s: "+format, append([]any{path}, args...)...)
	}

	type side struct {
		name  peftName
		t     safetensors.Tensor
		found bool
	}
	type pending struct {
		target string
		stem   string
		a, b   side
	}
	byTarget := map[string]*pending{}
	var special []safetensors.Tensor // embedding LoRA and full weights
	for _, t := range sf.Tensors {
		if _, _, embed, ok := peftLoRAName(t.Name); embed && ok {
			special = append(special, t)
			continue
		}
		if _, isFull, _ := peftFullWeight(path, &t, cfg); isFull {
			special = append(special, t)
			continue
		}
		pn, ok := parsePEFTName(t.Name)
		var stem string
		if ok {
			stem, ok = rule.modules[pn.key]
		}
		if !ok {
			return fail("tensor %q is not a LoRA weight of a module adapterd can map onto a %s base (model.layers.N.{%s}.lora_A/lora_B.weight)", t.Name, base.Arch, rule.moduleList())
		}
		target := targetTensor(pn.layer, stem)
		p := byTarget[target]
		if p == nil {
			p = &pending{target: target, stem: stem}
			byTarget[target] = p
		}
		h := &p.a
		if pn.ab == 'B' {
			h = &p.b
		}
		if h.found {
			return fail("tensors %q and %q both map to %s lora_%c", h.t.Name, t.Name, target, pn.ab)
		}
		*h = side{name: pn, t: t, found: true}
	}
	if len(byTarget) == 0 && len(special) == 0 {
		return fail("holds no LoRA tensors")
	}

	targets := make([]string, 0, len(byTarget))
	for t := range byTarget {
		targets = append(targets, t)
	}
	sort.Strings(targets)
	ad := &Weights{Arch: base.Arch, Alpha: cfg.alpha, Rank: cfg.rank}
	for _, target := range targets {
		p := byTarget[target]
		if !p.a.found || !p.b.found {
			have, missing := p.a, "B"
			if !p.a.found {
				have, missing = p.b, "A"
			}
			return fail("tensor %q has no matching lora_%s", have.t.Name, missing)
		}
		ta, tb := p.a.t, p.b.t
		if len(ta.Shape) != 2 || len(tb.Shape) != 2 {
			return fail("%s: lora_A is %v and lora_B is %v; both must be 2-D", p.target, ta.Shape, tb.Shape)
		}
		rank, in, out := ta.Shape[0], ta.Shape[1], tb.Shape[0]
		if tb.Shape[1] != rank || rank < 1 || in < 1 || out < 1 {
			return fail("%s: lora_A is %v and lora_B is %v; want [r, in] and [out, r]", p.target, ta.Shape, tb.Shape)
		}
		shape, ok := base.tensorShape(p.target)
		if !ok {
			return fail("%s targets %s, which the %s base model does not have (wrong base model?)", p.a.t.Name, p.target, base.Arch)
		}
		if len(shape) != 2 || shape[0] != uint64(in) || shape[1] != uint64(out) {
			return fail("%s: adapter is in=%d out=%d but the base tensor %s has shape %v (ggml [in, out]); wrong base model?", p.a.name.module, in, out, p.target, shape)
		}
		key := p.a.name.module
		if err := cfg.checkTargeted(path, ta.Name, key, true); err != nil {
			return nil, err
		}
		if want := cfg.rankFor(key); int64(want) != rank {
			return fail("%s: lora_A has rank %d but adapter_config.json says r=%d", p.a.name.module, rank, want)
		}
		scale := cfg.scaleFor(key, int(rank))
		pr := Delta{Target: p.target, Rank: int(rank), In: int(in), Out: int(out), Scale: scale}
		if pr.A, err = readSafetensor(fh, sf, ta); err != nil {
			return fail("%v", err)
		}
		if pr.B, err = readSafetensor(fh, sf, tb); err != nil {
			return fail("%v", err)
		}
		if rule.ropePermute && (p.stem == "attn_q" || p.stem == "attn_k") {
			heads := rule.ropeHeads(p.stem, base)
			if heads <= 0 {
				return fail("%s needs the RoPE permutation, but the base has no single %s.attention.head_count", p.target, base.Arch)
			}
			if pr.Out%(2*heads) != 0 {
				return fail("%s: %d output rows do not split into %d heads of an even size", p.target, pr.Out, heads)
			}
			pr.B = PermuteRows(pr.B, pr.Out, pr.Rank, heads)
		}
		ad.Deltas = append(ad.Deltas, pr)
	}
	if err := readPEFTSpecial(open, path, fh, sf, special, cfg, base, ad); err != nil {
		return nil, err
	}
	sortDeltas(ad.Deltas)
	return ad, nil
}

func readSafetensor(r io.ReaderAt, f *safetensors.File, t safetensors.Tensor) ([]float32, error) {
	dt := tensor.DType(t.DType)
	if dt.Size() == 0 {
		return nil, fmt.Errorf("tensor %q is %s; only F32, F16 and BF16 LoRA weights are supported (quantized QLoRA leftovers are not)", t.Name, t.DType)
	}
	raw := make([]byte, t.End-t.Begin)
	if _, err := io.ReadFull(f.Section(r, t), raw); err != nil {
		return nil, fmt.Errorf("tensor %q: %v", t.Name, err)
	}
	v, err := tensor.Decode(dt, raw)
	if err != nil {
		return nil, fmt.Errorf("tensor %q: %v", t.Name, err)
	}
	return v, nil
}
