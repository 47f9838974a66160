package lora

import (
	"fmt"

	"github.com/adapterd/adapterd/internal/gguf"
)

// The output projection (PEFT's lm_head, GGUF's output.weight) is the one
// module outside the blocks that adapterd adapts.
//
// Many bases tie it to the token embedding: Llama 3.2 1B/3B, the small
// Qwen 2.5 and Qwen 3 models, Gemma. Their GGUFs have no output.weight, and
// llama.cpp and Ollama's Go engine both project with token_embd.weight when
// output.weight is missing, and with output.weight when it is there
// (llama-model.cpp: "if output is NULL, init from the input tok embed";
// model/models/*: `gguf:"output,alt:token_embd"`).
//
// PEFT applies an lm_head LoRA to the output projection only: the trained
// model reads its input embeddings unchanged. So the exact merge on a tied
// base is a new, untied output.weight = token_embd + Scale·B·A, with
// token_embd kept as it is (untieOutput). Native cannot express that: the
// GGUF LoRA would name output.weight, a tensor the base does not have, and
// llama.cpp refuses to load it ("does not exist in base model"); so native
// is refused on such a base and auto merges (ingest's chooseStrategy).
const (
	outputModule    = "lm_head"
	outputStem      = "output"
	outputTensor    = "output.weight"
	embeddingTensor = "token_embd.weight"
)

// AdaptsOutput reports whether the adapter has a LoRA on the output
// projection (lm_head).
func (a *Adapter) AdaptsOutput() bool {
	for _, p := range a.Pairs {
		if p.Module == outputModule {
			return true
		}
	}
	return false
}

// TiesOutput reports whether base b projects onto the vocabulary with its
// token embedding: it has token_embd.weight and no output.weight. It needs
// b.Tensors.
func (b BaseInfo) TiesOutput() bool {
	_, out := b.Tensors[outputTensor]
	_, emb := b.Tensors[embeddingTensor]
	return emb && !out
}

// tensorShape is the shape of base tensor name, where output.weight of a
// tied base is the embedding it is tied to.
func (b BaseInfo) tensorShape(name string) ([]uint64, bool) {
	if s, ok := b.Tensors[name]; ok {
		return s, true
	}
	if name == outputTensor {
		s, ok := b.Tensors[embeddingTensor]
		return s, ok
	}
	return nil, false
}

// targetTensor is the GGUF weight a module stem of layer adapts; layer -1
// is outside the blocks (the output projection).
func targetTensor(layer int, stem string) string {
	if layer < 0 {
		return stem + ".weight"
	}
	return fmt.Sprintf("blk.%d.%s.weight", layer, stem)
}

// untieOutput returns f with an output.weight tensor when a adapts or
// replaces (modules_to_save) the output projection and f ties it to the
// embedding: a tensor entry of the embedding's type and shape that reads the
// embedding's own bytes, so the merge writes token_embd unchanged (unless
// replaced itself) and output.weight = token_embd + delta, or the saved
// lm_head.
// Otherwise it returns f itself.
func untieOutput(f *gguf.File, a *Weights) *gguf.File {
	adapts := false
	for i := range a.Deltas {
		adapts = adapts || a.Deltas[i].Target == outputTensor
	}
	for i := range a.Replace {
		adapts = adapts || a.Replace[i].Target == outputTensor
	}
	if !adapts {
		return f
	}
	if _, ok := f.Tensor(outputTensor); ok {
		return f
	}
	emb, ok := f.Tensor(embeddingTensor)
	if !ok {
		return f
	}
	out := *f
	out.Tensors = make([]gguf.Tensor, 0, len(f.Tensors)+1)
	for _, t := range f.Tensors {
		out.Tensors = append(out.Tensors, t)
		if t.Name == "output_norm.weight" {
			// Where convert_hf_to_gguf.py puts output.weight.
			o := emb
			o.Name = outputTensor
			out.Tensors = append(out.Tensors, o)
		}
	}
	if len(out.Tensors) == len(f.Tensors) {
		o := emb
		o.Name = outputTensor
		out.Tensors = append(out.Tensors, o)
	}
	return &out
}
