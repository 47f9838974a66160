package ingest

import (
	"fmt"

	"github.com/ollama/ollama/api"
	"github.com/ollama/ollama/template"

	"github.com/adapterd/adapterd/internal/spec"
)

// The one decision about a folder. The daemon's plan, `check`, `create`
// (with and without --dry-run), `modelfile` and `fetch-adapter` all call
// decide with what they read of the folder and of Ollama, so they cannot
// disagree: a command differs from the daemon only in what it does with the
// Decision, and in a policy such as replacing an existing model.

// serverFacts is what Ollama said about a folder, as plain values, read by
// readServer. Reached is false when Ollama was not asked (modelfile) or did
// not answer (check offline): decide then skips the checks that need it
// and says which.
type serverFacts struct {
	Reached  bool
	Version  string
	Adapters bool // the server still creates adapter models (< 0.34)
	// BaseDigest is the base model's digest; "" when Ollama does not have
	// the base, which nothing but a pull fixes.
	BaseDigest string
	Base       *baseDetails
	// TiedOutput: the adapter adapts lm_head and the base ties it to the
	// token embedding (tied.go). Only asked for an lm_head adapter.
	TiedOutput bool
	// BaseWeightsErr is why the base's GGUF cannot be read on this host
	// (merge needs it); nil when it can.
	BaseWeightsErr error
}

// folderFacts is what was read of a folder besides its parsed files.
type folderFacts struct {
	Folder  *Folder
	Digests map[string]string // adapter file -> sha256, when hashed
	// WeightsErr is the first tensor holding NaN or Inf (or a weights file
	// the scan could not parse), found while hashing.
	WeightsErr error
}

// Decision is everything adapterd decides about a valid folder before it
// creates anything.
type Decision struct {
	// Strategy is native or merge; "" when it depends on a server that was
	// not reached (auto offline).
	Strategy spec.Strategy `json:"strategy"`
	Reason   string        `json:"strategy_reason"`
	// Refusals are every reason the folder cannot become a model, most
	// basic first; the daemon shows the first as the folder's invalid
	// status, `check` prints each on its own line.
	Refusals []error `json:"-"`
	// BaseMissing is set when Ollama does not have the base: not the
	// folder's fault, so the daemon retries (status failed) rather than
	// marking the folder invalid.
	BaseMissing string `json:"base_missing,omitempty"`
	// Skipped names the checks not made because Ollama was not reached.
	Skipped []string `json:"skipped,omitempty"`
	// Input is the digest of every input (the status digest); "" when
	// the strategy or the files' digests are unknown.
	Input string `json:"input_digest,omitempty"`
	// Request is the create that would be sent, but for the digest of the
	// one blob adapterd uploads (Adapters["adapter.gguf"] for native,
	// Files["model.gguf"] for merge), which apply fills in. nil when the
	// strategy is unknown or the folder is refused.
	Request *api.CreateRequest `json:"-"`
	// Verify: the model is made under a temporary name, loaded, and
	// checked against Checks before it takes the name (verify: true, or
	// any checks:).
	Verify bool         `json:"verify,omitempty"`
	Checks []spec.Check `json:"-"`
	// KeepVersions is how many versions of the model are kept.
	KeepVersions int `json:"-"`
}

// Ok reports whether nothing refuses the folder.
func (d Decision) Ok() bool { return len(d.Refusals) == 0 && d.BaseMissing == "" }

// Checks skipped without Ollama, as `check` reports them.
const (
	skipBase     = "base model present and fitting the adapter"
	skipStrategy = "strategy rules that need the server (its version, the base's architecture and output)"
	skipWeights  = "base weights readable for merge"
)

// decide is the one decision about a folder from what was read of it and of
// Ollama. It is pure: no I/O, no clock. Every refusal the daemon can make
// before a create is made here, and TestDecide has a row for each.
func decide(ff folderFacts, s serverFacts) Decision {
	f := ff.Folder
	res, a := f.Resolved, f.Adapter
	var d Decision
	refuse := func(err error) { d.Refusals = append(d.Refusals, err) }
	if ff.WeightsErr != nil {
		refuse(ff.WeightsErr)
	}
	if err := checkTemplate(f.SidecarFile, res.Template); err != nil {
		refuse(err)
	}
	var err error
	if !s.Reached {
		d.Skipped = []string{skipBase, skipStrategy, skipWeights}
		d.Strategy, d.Reason, err = chooseStrategy(res, f.SidecarFile, a.NativeBlocker(), a.Files, strategyServer{})
		if err != nil {
			refuse(err)
		}
		return d
	}
	if s.BaseDigest == "" || s.Base == nil {
		d.BaseMissing = fmt.Sprintf("%s: base model %s is not in Ollama; run `ollama pull %s` or fix base:", f.SidecarFile, res.Base, res.Base)
		return d
	}
	if err := a.CheckBase(res.Base, s.Base.Info); err != nil {
		refuse(err)
	}
	d.Strategy, d.Reason, err = chooseStrategy(res, f.SidecarFile, a.NativeBlocker(), a.Files, strategyServer{
		known: true, version: s.Version, adapters: s.Adapters, arch: s.Base.Info.Arch, tied: s.TiedOutput})
	if err != nil {
		refuse(err)
	}
	if d.Strategy == spec.StrategyMerge && s.BaseWeightsErr != nil {
		refuse(s.BaseWeightsErr)
	}
	if d.Strategy == "" || len(d.Refusals) > 0 {
		return d
	}
	if d.Request, err = createRequest(res, d.Strategy, s.Base); err != nil {
		refuse(err)
		return d
	}
	if ff.Digests != nil {
		d.Input = inputDigest(res, d.Strategy, ff.Digests, s.BaseDigest)
	}
	d.Verify, d.Checks, d.KeepVersions = res.Verify || len(res.Checks) > 0, res.Checks, res.KeepVersions
	return d
}

// checkTemplate parses a sidecar's template the way Ollama's create does
// (server/create.go setTemplate calls template.Parse), so a template Ollama
// would refuse is refused before anything is uploaded.
func checkTemplate(file, tmpl string) error {
	if tmpl == "" {
		return nil
	}
	if _, err := template.Parse(tmpl); err != nil {
		return &spec.Error{File: file, Msg: fmt.Sprintf("template: Ollama cannot parse it (%v); fix template: (Go template syntax, as Ollama's TEMPLATE)", err)}
	}
	return nil
}

// strategyServer is what the strategy rules need to know of the server and
// base; known is false when Ollama was not reached.
type strategyServer struct {
	known    bool
	version  string
	adapters bool
	arch     string
	tied     bool
}

// chooseStrategy resolves auto and checks that the chosen strategy can work
// on this server, base and adapter: native needs a server that still
// creates adapters, a base that Ollama runs on llama.cpp, an adapter that
// only adds B·A (blocker ""), and, for an adapter on lm_head, a base with
// its own output weight (see lora/output.go). reason says why, for people.
// Without the server, only the rules that need none are applied. A refusal
// names the weights file when the adapter is the cause, else the sidecar,
// where strategy: is set.
func chooseStrategy(res *spec.Resolved, sidecar, blocker string, files []string, s strategyServer) (spec.Strategy, string, error) {
	refuse := func(format string, args ...any) error {
		return &spec.Error{File: sidecar, Msg: fmt.Sprintf(format, args...)}
	}
	goEngine := goEngineArchs[s.arch]
	switch res.Strategy {
	case spec.StrategyMerge:
		return spec.StrategyMerge, "strategy: merge was asked for", nil
	case spec.StrategyNative:
		switch {
		case blocker != "":
			return "", "", &spec.Error{File: files[len(files)-1], Msg: blocker + "; set strategy: merge (or auto)"}
		case !s.known:
			return spec.StrategyNative, "strategy: native was asked for", nil
		case goEngine:
			return "", "", refuse("base %s is %s, which Ollama runs on its Go engine, and that engine cannot load LoRA adapters (the model would be created but fail when used); set strategy: merge (or auto)", res.Base, s.arch)
		case s.tied:
			return "", "", refuse("%s", tiedHeadNative(res.Base))
		case !s.adapters:
			return "", "", refuse("Ollama %s no longer creates LoRA adapter models; set strategy: merge (or auto)", s.version)
		}
		return spec.StrategyNative, "strategy: native was asked for", nil
	}
	switch {
	case blocker != "":
		return spec.StrategyMerge, "auto: " + blocker, nil
	case !s.known:
		return "", "auto: depends on the Ollama server, which was not reached", nil
	case goEngine:
		return spec.StrategyMerge, fmt.Sprintf("auto: base %s is %s, which Ollama runs on its Go engine, and that engine cannot load LoRA", res.Base, s.arch), nil
	case s.tied:
		return spec.StrategyMerge, fmt.Sprintf("auto: the adapter adapts lm_head and base %s ties it to the token embedding; merging gives the model its own output weight", res.Base), nil
	case !s.adapters:
		return spec.StrategyMerge, fmt.Sprintf("auto: Ollama %s no longer creates adapter models (0.34 removed it)", s.version), nil
	}
	return spec.StrategyNative, fmt.Sprintf("auto: Ollama %s creates adapter models and base %s (%s) runs on llama.cpp", s.version, res.Base, s.arch), nil
}

// createRequest is the create for strategy, but for the uploaded blob's
// digest: the sidecar's fields, and for a merge the base's template,
// system, license, messages and parameters under them, since a merged
// model is a plain model that inherits nothing from the base.
func createRequest(res *spec.Resolved, strategy spec.Strategy, base *baseDetails) (*api.CreateRequest, error) {
	req := &api.CreateRequest{System: res.System, Template: res.Template}
	for _, m := range res.Messages {
		req.Messages = append(req.Messages, api.Message{Role: m.Role, Content: m.Content})
	}
	if len(res.License) == 1 {
		req.License = res.License[0]
	} else if len(res.License) > 1 {
		req.License = []string(res.License)
	}
	if strategy != spec.StrategyMerge {
		req.From, req.Adapters, req.Parameters = res.Base, map[string]string{"adapter.gguf": ""}, res.Parameters
		return req, nil
	}
	req.Files = map[string]string{"model.gguf": ""}
	show := base.Show
	if req.Template == "" {
		req.Template = show.Template
	}
	if req.System == "" {
		req.System = show.System
	}
	if req.License == nil && show.License != "" {
		req.License = show.License
	}
	if len(req.Messages) == 0 {
		req.Messages = append(req.Messages, show.Messages...)
	}
	params := parseShowParameters(show.Parameters)
	for k, v := range res.Parameters {
		params[k] = v
	}
	var err error
	if req.Parameters, err = spec.NormalizeParameters(params); err != nil {
		return nil, terminalf("parameters of base %s and the sidecar: %v", res.Base, err)
	}
	return req, nil
}
