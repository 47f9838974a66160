package lora

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"

	"github.com/adapterd/adapterd/internal/spec"
)

// peftSettings is what adapter_config.json says about the meaning of the
// weights: the one parse both Detect and Weights use. Keys PEFT writes that
// do not change the weights (task_type, lora_dropout, base_model_name_or_path,
// a QLoRA base's quantization settings, …) are not kept.
type peftSettings struct {
	rank   int
	alpha  float64
	rslora bool
	// rankPattern and alphaPattern are in file order: PEFT takes the first
	// key that matches (see patternFor).
	rankPattern, alphaPattern []patternEntry
	targets                   targetModules
	// layers is layers_to_transform (nil: every layer); layersPattern is
	// layers_pattern, which only says where the layer number is.
	layers        []int
	layersPattern []string
	// modulesToSave are the modules saved as full weights.
	modulesToSave []string
}

type patternEntry struct {
	key   string
	value float64
}

// targetModules is target_modules: absent or null (PEFT picked defaults for
// the model type), a list of names, the string "all-linear", or any other
// string, which PEFT reads as a regular expression.
type targetModules struct {
	set       bool
	allLinear bool
	list      []string
	regex     string
	re        *regexp.Regexp // nil when RE2 cannot read regex (Python-only syntax)
}

// peftTypeFixes says, for each PEFT method that is not LoRA, why adapterd
// cannot use it and what to do instead. Everything here either has no B·A
// delta (prompt learning, IA³) or a delta of another form.
var peftTypeFixes = map[string]string{
	"ADALORA":                 "AdaLoRA adds a third tensor (lora_E) between A and B",
	"IA3":                     "IA³ rescales activations instead of adding B·A",
	"LOHA":                    "LoHa builds its delta from Hadamard products",
	"LOKR":                    "LoKr builds its delta from Kronecker products",
	"OFT":                     "OFT rotates the weights instead of adding B·A",
	"BOFT":                    "BOFT rotates the weights instead of adding B·A",
	"VERA":                    "VeRA shares frozen random matrices between layers",
	"FOURIERFT":               "FourierFT stores its delta as Fourier coefficients",
	"PREFIX_TUNING":           "prefix tuning adds virtual tokens to every layer and has no weights to apply",
	"P_TUNING":                "p-tuning adds virtual tokens and has no weights to apply",
	"PROMPT_TUNING":           "prompt tuning adds virtual tokens and has no weights to apply",
	"MULTITASK_PROMPT_TUNING": "prompt tuning adds virtual tokens and has no weights to apply",
	"ADAPTION_PROMPT":         "adaption prompts add gated prompt layers and have no weights to apply",
}

const (
	mergeOrRetrain = "merge it into the base with PEFT (model.merge_and_unload(), then save_pretrained) and import that as a model, or retrain with LoraConfig"
	doraFix        = "use_dora is true; DoRA rescales every weight column by a trained magnitude, which neither a GGUF LoRA nor adapterd's merge applies: merge it into the base with PEFT (model.merge_and_unload(), then save_pretrained) and import that as a model, or retrain with use_dora=False"
)

// fullWeightModules are the modules whose full weights (modules_to_save)
// a merge can put in place of the base's tensors.
var fullWeightModules = map[string]string{outputModule: outputTensor, "embed_tokens": embeddingTensor}

// parsePEFTConfig checks adapter_config.json. adapterd converts PEFT files
// itself and never hands them to Ollama, so what Ollama's converter would
// reject (a float lora_alpha, rsLoRA, rank and alpha patterns) is fine:
// Adapter.Weights applies them. Unknown keys are fine too; PEFT writes
// dozens that do not change the weights' meaning.
func parsePEFTConfig(path string, data []byte) (*peftSettings, error) {
	fail := func(format string, args ...any) (*peftSettings, error) {
		return nil, adapterErr(path, format, args...)
	}
	if bytes.HasPrefix(data, []byte("\xef\xbb\xbf")) {
		return fail("starts with a byte order mark (BOM), which Ollama's JSON parser rejects: save the file as UTF-8 without BOM")
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, configSyntaxError(path, data, err)
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
		if why, ok := peftTypeFixes[strings.ToUpper(pt)]; ok {
			return fail("peft_type is %s; adapterd applies LoRA only, and %s: %s", spec.Quote(pt), why, mergeOrRetrain)
		}
		return fail("peft_type is %s; adapterd applies LoRA only (peft_type \"LORA\"): %s", spec.Quote(pt), mergeOrRetrain)
	}

	// fan_in_fan_out is accepted: it says the *base* layer stores its
	// weight transposed (GPT-2's Conv1D), while lora_A stays [r, in] and
	// lora_B [out, r] and the forward pass is x·Aᵀ·Bᵀ either way (PEFT
	// lora/layer.py: Linear.forward never reads it; get_delta_weight only
	// transposes B·A to the Conv1D storage). GGUF stores every weight as
	// out rows of in values, so B·A is the delta as it is. On nn.Linear
	// modules (every base adapterd supports) PEFT itself resets the flag
	// to False with a warning when it loads the adapter.
	refusals := []struct{ key, msg string }{
		{"use_dora", doraFix},
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
	if _, err := jsonBoolField(m, "fan_in_fan_out"); err != nil {
		return fail("%v", err)
	}
	s := &peftSettings{}
	var err error
	if s.rslora, err = jsonBoolField(m, "use_rslora"); err != nil {
		return fail("%v", err)
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
	if s.modulesToSave, err = jsonStrings(m, "modules_to_save"); err != nil {
		return fail("%v", err)
	}
	for _, name := range s.modulesToSave {
		if _, ok := fullWeightModules[lastDotPart(name)]; !ok {
			return fail("modules_to_save names %s; only full lm_head and embed_tokens weights can go into a GGUF model: retrain without it in modules_to_save", spec.Quote(name))
		}
	}
	for _, p := range []struct {
		key string
		dst *[]patternEntry
	}{{"rank_pattern", &s.rankPattern}, {"alpha_pattern", &s.alphaPattern}} {
		if *p.dst, err = jsonPattern(m, p.key); err != nil {
			return fail("%v", err)
		}
	}
	for _, e := range s.rankPattern {
		if e.value != math.Trunc(e.value) || e.value < 1 || e.value > maxAdapterRank {
			return fail("rank_pattern[%s] is %v; it must be a whole number from 1 to %d", spec.Quote(e.key), e.value, maxAdapterRank)
		}
	}
	for _, e := range s.alphaPattern {
		if math.IsNaN(e.value) || math.IsInf(e.value, 0) || e.value <= 0 || e.value > math.MaxUint32 {
			return fail("alpha_pattern[%s] is %v; it must be a positive number", spec.Quote(e.key), e.value)
		}
	}
	if s.targets, err = jsonTargets(m); err != nil {
		return fail("%v", err)
	}
	if s.layers, err = jsonLayers(m); err != nil {
		return fail("%v", err)
	}
	if raw, ok := m["layers_pattern"]; ok && !jsonNull(raw) {
		var one string
		if json.Unmarshal(raw, &one) == nil {
			s.layersPattern = []string{one}
		} else if s.layersPattern, err = jsonStrings(m, "layers_pattern"); err != nil {
			return fail("%v", err)
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
		s.rank = int(f)
	}

	raw, ok = m["lora_alpha"]
	if !ok || jsonNull(raw) {
		return fail("lora_alpha is missing; set it to the value the adapter was trained with (PEFT's default is 8)")
	}
	lit, isNum = jsonNumber(raw)
	if !isNum {
		var str string
		if json.Unmarshal(raw, &str) == nil {
			return fail("lora_alpha is the string %s; it must be a number: write it without quotes", spec.Quote(str))
		}
		return fail("lora_alpha is %s; it must be a number: set it to the value the adapter was trained with", jsonShow(raw))
	}
	s.alpha, err = strconv.ParseFloat(lit, 64)
	if err != nil || math.IsInf(s.alpha, 0) || math.IsNaN(s.alpha) || s.alpha <= 0 || s.alpha > math.MaxUint32 {
		return fail("lora_alpha is %s; it must be a positive number up to %d: set it to the value the adapter was trained with", shortNum(lit), uint32(math.MaxUint32))
	}
	return s, nil
}

// configSyntaxError turns a failed decode of adapter_config.json into one
// line with the position.
func configSyntaxError(path string, data []byte, err error) error {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se) && se.Offset >= int64(len(data)):
		// A JSON text cut short is what a copy in progress looks like,
		// like a truncated safetensors file.
		return &causedError{&spec.Error{File: path, Line: jsonLine(data, int64(len(data))), Msg: "the JSON ends early: still copying? if not, fix the file"}, errConfigEndsEarly}
	case errors.As(err, &se):
		line, col := jsonPosition(data, se.Offset)
		return &spec.Error{File: path, Line: line, Msg: printable(fmt.Sprintf("not valid JSON at column %d (byte %d): %v: fix the syntax", col, se.Offset, se))}
	case errors.As(err, &te):
		return adapterErr(path, "must be a JSON object as PEFT writes it, found a JSON %s: put the adapter's own adapter_config.json here", te.Value)
	}
	return adapterErr(path, "not valid JSON: %v: fix the syntax", err)
}

// rankFor and scaleFor give a module its r and its scale. key is the
// module's name in the model as PEFT names it (model.layers.0.self_attn.
// q_proj). PEFT (LoraModel._create_and_replace) looks both up with
// get_pattern_key, and scales by alpha/r, or alpha/√r with use_rslora
// (LoraLayer.update_layer).
func (s *peftSettings) rankFor(key string) int {
	if v, ok := patternFor(s.rankPattern, key); ok {
		return int(v)
	}
	return s.rank
}

func (s *peftSettings) scaleFor(key string, rank int) float64 {
	alpha := s.alpha
	if v, ok := patternFor(s.alphaPattern, key); ok {
		alpha = v
	}
	if s.rslora {
		return alpha / math.Sqrt(float64(rank))
	}
	return alpha / float64(rank)
}

// patternFor is PEFT's get_pattern_key (peft/tuners/tuners_utils.py, since
// v0.14): the first key, in the file's order, for which
// re.match(rf"(^|.*\.){key}$", module) succeeds. The key is a Python
// regular expression; one RE2 cannot read is compared as a literal name
// suffix, which is what such keys almost always are.
func patternFor(pat []patternEntry, module string) (float64, bool) {
	for _, e := range pat {
		re, err := regexp.Compile(`^(?:(^|.*\.)` + e.key + `$)`)
		if err != nil {
			if module == e.key || strings.HasSuffix(module, "."+e.key) {
				return e.value, true
			}
			continue
		}
		if re.MatchString(module) {
			return e.value, true
		}
	}
	return 0, false
}

// layerIndexRe is PEFT's default way to find a module's layer number:
// re.match(r".*\.[^.]*\.(\d+)\.", key).
var layerIndexRe = regexp.MustCompile(`^.*\.[^.]*\.(\d+)\.`)

// targets reports whether PEFT would have put a LoRA on the module named
// key (model.layers.0.self_attn.q_proj), following check_target_module_exists
// (peft/tuners/tuners_utils.py): a string is re.fullmatch'ed against the
// key, "all-linear" means every linear layer but the output layer; a list
// matches the key itself or any key ending in "."+name, and only for a list
// does layers_to_transform (with layers_pattern) narrow it to those layers.
// known is false when the config can't be checked here (no target_modules,
// or a regex RE2 cannot read): the tensors are what was trained, so then
// they are taken as they are.
func (s *peftSettings) selects(key string, linear bool) (ok, known bool) {
	t := s.targets
	switch {
	case !t.set:
		return true, false
	case t.allLinear:
		return linear, true
	case t.regex != "":
		if t.re == nil {
			return true, false
		}
		return t.re.MatchString(key), true
	}
	found := false
	for _, name := range t.list {
		if key == name {
			return true, true // an exact name skips layers_to_transform
		}
		if strings.HasSuffix(key, "."+name) {
			found = true
		}
	}
	if !found || s.layers == nil {
		return found, true
	}
	var idx []string
	if len(s.layersPattern) == 0 {
		idx = layerIndexRe.FindStringSubmatch(key)
	} else {
		for _, p := range s.layersPattern {
			re, err := regexp.Compile(`^.*\.` + p + `\.(\d+)\.`)
			if err != nil {
				return true, false
			}
			if idx = re.FindStringSubmatch(key); idx != nil {
				break
			}
		}
	}
	if idx == nil {
		return false, true
	}
	n, err := strconv.Atoi(idx[1])
	if err != nil {
		return false, true
	}
	for _, l := range s.layers {
		if l == n {
			return true, true
		}
	}
	return false, true
}

// checkTargeted refuses a tensor the config says was not trained: the
// weights and the config disagree, so one of them is not the adapter's.
func (s *peftSettings) checkTargeted(path, tensor, key string, linear bool) error {
	ok, known := s.selects(key, linear)
	if ok || !known {
		return nil
	}
	what := "target_modules " + s.targets.describe()
	if s.layers != nil && !s.targets.allLinear && s.targets.regex == "" {
		what += fmt.Sprintf(" with layers_to_transform %v", s.layers)
	}
	return adapterErr(path, "tensor %s adapts %s, which %s does not select: the config and the weights are from different adapters: copy both files from one save_pretrained", quoteTensor(tensor), key, what)
}

func (t targetModules) describe() string {
	switch {
	case t.allLinear:
		return `"all-linear"`
	case t.regex != "":
		return spec.Quote(t.regex)
	}
	b, _ := json.Marshal(t.list)
	return jsonShow(b)
}

func jsonTargets(m map[string]json.RawMessage) (targetModules, error) {
	raw, ok := m["target_modules"]
	if !ok || jsonNull(raw) {
		return targetModules{}, nil
	}
	t := targetModules{set: true}
	var one string
	if json.Unmarshal(raw, &one) == nil {
		if strings.EqualFold(one, "all-linear") {
			t.allLinear = true
			return t, nil
		}
		t.regex = one
		// Python's re.fullmatch; RE2 lacks look-arounds and
		// back-references, and then the check is skipped.
		t.re, _ = regexp.Compile(`^(?:` + one + `)$`)
		return t, nil
	}
	list, err := jsonStrings(m, "target_modules")
	if err != nil {
		return t, err
	}
	t.list = list
	return t, nil
}

func jsonLayers(m map[string]json.RawMessage) ([]int, error) {
	raw, ok := m["layers_to_transform"]
	if !ok || jsonNull(raw) {
		return nil, nil
	}
	bad := fmt.Errorf("layers_to_transform is %s; it must be a layer number or a list of them", jsonShow(raw))
	var one int
	if json.Unmarshal(raw, &one) == nil {
		if one < 0 {
			return nil, bad
		}
		return []int{one}, nil
	}
	var list []int
	if json.Unmarshal(raw, &list) != nil {
		return nil, bad
	}
	for _, l := range list {
		if l < 0 {
			return nil, bad
		}
	}
	if len(list) == 0 {
		return nil, nil // PEFT treats [] as "every layer"
	}
	return list, nil
}

// jsonStrings reads a list of strings (or null).
func jsonStrings(m map[string]json.RawMessage, key string) ([]string, error) {
	raw, ok := m[key]
	if !ok || jsonNull(raw) {
		return nil, nil
	}
	var list []string
	if json.Unmarshal(raw, &list) != nil {
		return nil, fmt.Errorf("%s is %s; it must be a list of module names or null", key, jsonShow(raw))
	}
	return list, nil
}

// jsonPattern reads a {"name": number} object keeping the file's key
// order, which decides which key PEFT picks.
func jsonPattern(m map[string]json.RawMessage, key string) ([]patternEntry, error) {
	raw, ok := m[key]
	if !ok || jsonNull(raw) {
		return nil, nil
	}
	bad := fmt.Errorf("%s is %s; it must be an object of module names and numbers", key, jsonShow(raw))
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, bad
	}
	var out []patternEntry
	for dec.More() {
		tok, err := dec.Token()
		name, isStr := tok.(string)
		if err != nil || !isStr {
			return nil, bad
		}
		var n json.Number
		if err := dec.Decode(&n); err != nil {
			return nil, bad
		}
		v, err := n.Float64()
		if err != nil {
			return nil, bad
		}
		for _, e := range out {
			if e.key == name {
				return nil, fmt.Errorf("%s names %s twice; keep one", key, spec.Quote(name))
			}
		}
		out = append(out, patternEntry{name, v})
	}
	return out, nil
}

func lastDotPart(s string) string {
	if i := strings.LastIndexByte(s, '.'); i >= 0 {
		return s[i+1:]
	}
	return s
}
