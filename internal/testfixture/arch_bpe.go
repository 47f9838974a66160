package testfixture

import (
	"sort"
	"strings"

	"github.com/adapterd/adapterd/internal/gguf"
)

// Tokenizers a fixture base can carry (Base.Tokenizer). Each is a tiny
// vocabulary built the way its real counterpart is, so that llama.cpp and
// Ollama's Go engine load it through the same code paths as a library
// model's.
const (
	// TokenizerSPM is the SentencePiece vocabulary of shared/OLLAMA.md
	// (tokenizer.ggml.model "llama"): llama 2, phi3, gemma. The default.
	TokenizerSPM = ""
	// TokenizerMistral is SentencePiece with Mistral v0.3's control tokens
	// ([INST], [/INST], [TOOL_CALLS], …) between </s> and the byte tokens.
	TokenizerMistral = "mistral"
	// TokenizerLlama3 is byte-level BPE (tokenizer.ggml.model "gpt2") with
	// pre-tokenizer "llama-bpe" and Llama 3's special tokens at the end.
	TokenizerLlama3 = "llama-bpe"
	// TokenizerQwen2 is byte-level BPE with pre-tokenizer "qwen2" and
	// Qwen's ChatML special tokens, as qwen2, qwen2.5 and qwen3 ship.
	TokenizerQwen2 = "qwen2"
)

// vocabulary is everything a GGUF says about its tokenizer.
type vocabulary struct {
	model  string // tokenizer.ggml.model
	pre    string // tokenizer.ggml.pre; "" writes none
	tokens []string
	scores []float32 // SPM only
	types  []int32
	merges []string // BPE only
	bos    uint32
	eos    uint32
	unk    int // -1: none
	pad    int // -1: none
	addBOS bool
	// chatTemplate is tokenizer.chat_template, the Jinja template Hugging
	// Face ships and convert_hf_to_gguf.py copies.
	chatTemplate string
}

// kv is the tokenizer.* metadata.
func (v vocabulary) kv() []gguf.KV {
	kv := []gguf.KV{{Key: "tokenizer.ggml.model", Value: v.model}}
	if v.pre != "" {
		kv = append(kv, gguf.KV{Key: "tokenizer.ggml.pre", Value: v.pre})
	}
	kv = append(kv, gguf.KV{Key: "tokenizer.ggml.tokens", Value: v.tokens})
	if v.scores != nil {
		kv = append(kv, gguf.KV{Key: "tokenizer.ggml.scores", Value: v.scores})
	}
	kv = append(kv, gguf.KV{Key: "tokenizer.ggml.token_type", Value: v.types})
	if v.merges != nil {
		kv = append(kv, gguf.KV{Key: "tokenizer.ggml.merges", Value: v.merges})
	}
	kv = append(kv,
		gguf.KV{Key: "tokenizer.ggml.bos_token_id", Value: v.bos},
		gguf.KV{Key: "tokenizer.ggml.eos_token_id", Value: v.eos})
	if v.unk >= 0 {
		kv = append(kv, gguf.KV{Key: "tokenizer.ggml.unknown_token_id", Value: uint32(v.unk)})
	}
	if v.pad >= 0 {
		kv = append(kv, gguf.KV{Key: "tokenizer.ggml.padding_token_id", Value: uint32(v.pad)})
	}
	kv = append(kv,
		gguf.KV{Key: "tokenizer.ggml.add_bos_token", Value: v.addBOS},
		gguf.KV{Key: "tokenizer.ggml.add_eos_token", Value: false})
	if v.chatTemplate != "" {
		kv = append(kv, gguf.KV{Key: "tokenizer.chat_template", Value: v.chatTemplate})
	}
	return kv
}

// token types, as llama.cpp's llama_token_type numbers them.
const (
	typeNormal  = 1
	typeUnknown = 2
	typeControl = 3
	typeByte    = 6
)

// vocabFor returns the vocabulary of tokenizer name; an unknown name is
// the caller's bug and gets SPM.
func vocabFor(name string) vocabulary {
	switch name {
	case TokenizerLlama3:
		return llama3Vocab()
	case TokenizerQwen2:
		return qwen2Vocab()
	case TokenizerMistral:
		return mistralVocab()
	}
	tokens, scores, types := Vocab()
	return vocabulary{model: "llama", tokens: tokens, scores: scores, types: types, bos: 1, eos: 2, unk: 0, pad: -1, addBOS: true}
}

// ByteSymbols is GPT-2's bytes_to_unicode: the printable character that
// byte-level BPE writes for each byte (so a space is "Ġ", a newline "Ċ").
// order lists the bytes in the order the mapping enumerates them, printable
// ones first, which is the order of the first 256 ids in Llama 3's and
// Qwen's vocabularies.
func ByteSymbols() (sym [256]string, order []byte) {
	printable := func(b int) bool {
		return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)
	}
	n := 0
	for b := 0; b < 256; b++ {
		if printable(b) {
			sym[b] = string(rune(b))
			order = append(order, byte(b))
		}
	}
	for b := 0; b < 256; b++ {
		if !printable(b) {
			sym[b] = string(rune(256 + n))
			n++
			order = append(order, byte(b))
		}
	}
	return sym, order
}

// bpeCorpus is the text the fixture's merges are learned from: the words of
// the test prompts, in sentences, so common words become single tokens and
// rare ones split, as in a real vocabulary.
const bpeCorpus = `hello world. the cat is on the red mat. a red sun and a blue moon.
one dog and one cat. you and the dog. it is the sun of the world.
the moon is blue and the sun is red. hello you. is it the one?
the world of the cat and the dog. you and it. a cat, a dog, a sun.
hello, hello world! the blue cat is one of the red dogs.
in the world it is one to one. of the sun, of the moon, of the world.`

// bpeMerges learns n merges from corpus the way BPE training does: split
// into words with GPT-2's rule (a space belongs to the word after it), write
// each byte as its byte-level symbol, then repeatedly merge the most frequent
// adjacent pair (ties broken by the pair's text, for determinism).
func bpeMerges(corpus string, n int) []string {
	sym, _ := ByteSymbols()
	counts := map[string]int{}
	for _, line := range strings.Split(corpus, "\n") {
		for _, w := range splitWords(line) {
			counts[w]++
		}
	}
	type word struct {
		parts []string
		n     int
	}
	var words []word
	keys := make([]string, 0, len(counts))
	for w := range counts {
		keys = append(keys, w)
	}
	sort.Strings(keys)
	for _, w := range keys {
		var parts []string
		for _, b := range []byte(w) {
			parts = append(parts, sym[b])
		}
		words = append(words, word{parts, counts[w]})
	}
	var merges []string
	for len(merges) < n {
		freq := map[string]int{}
		for _, w := range words {
			for i := 0; i+1 < len(w.parts); i++ {
				freq[w.parts[i]+" "+w.parts[i+1]] += w.n
			}
		}
		// Pairs seen once still merge, so that every corpus word ends as a
		// single token, as the common words of a real vocabulary do.
		best, bestN := "", 0
		for p, f := range freq {
			if f > bestN || (f == bestN && p < best) {
				best, bestN = p, f
			}
		}
		if best == "" {
			break
		}
		merges = append(merges, best)
		l, r, _ := strings.Cut(best, " ")
		for wi := range words {
			ps := words[wi].parts
			out := ps[:0:0]
			for i := 0; i < len(ps); i++ {
				if i+1 < len(ps) && ps[i] == l && ps[i+1] == r {
					out = append(out, l+r)
					i++
					continue
				}
				out = append(out, ps[i])
			}
			words[wi].parts = out
		}
	}
	return merges
}

// splitWords is the pre-tokenizer's effect on plain lowercase text: letters
// runs with the space before them, punctuation runs apart.
func splitWords(s string) []string {
	var out []string
	var cur strings.Builder
	kind := 0 // 0 none, 1 letters, 2 other
	flush := func() {
		if cur.Len() > 0 {
			out = append(out, cur.String())
			cur.Reset()
		}
		kind = 0
	}
	for _, c := range s {
		switch {
		case c == ' ':
			flush()
			cur.WriteRune(c)
		case c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
			if kind == 2 {
				flush()
			}
			kind = 1
			cur.WriteRune(c)
		default:
			if kind == 1 {
				flush()
			}
			kind = 2
			cur.WriteRune(c)
		}
	}
	flush()
	return out
}

// bpeMergeCount caps the merges the fixtures learn. The corpus runs out
// first (52 merges), when every corpus word is one token.
const bpeMergeCount = 160

// byteLevelVocab is the 256 byte symbols followed by one token per merge,
// all normal, then specials as control tokens. It returns the id of the
// first special.
func byteLevelVocab(specials []string) (tokens []string, types []int32, merges []string, first int) {
	sym, order := ByteSymbols()
	for _, b := range order {
		tokens = append(tokens, sym[b])
	}
	merges = bpeMerges(bpeCorpus, bpeMergeCount)
	for _, m := range merges {
		tokens = append(tokens, strings.Replace(m, " ", "", 1))
	}
	types = make([]int32, len(tokens))
	for i := range types {
		types[i] = typeNormal
	}
	first = len(tokens)
	for _, s := range specials {
		tokens = append(tokens, s)
		types = append(types, typeControl)
	}
	return tokens, types, merges, first
}

// llama3Vocab is Llama 3.1/3.2's layout: byte-level BPE, then the special
// tokens in their real order (128000 <|begin_of_text|> … 128009 <|eot_id|>).
// Like the Llama 3.2 instruct GGUFs, eos is <|eot_id|>.
func llama3Vocab() vocabulary {
	tokens, types, merges, first := byteLevelVocab([]string{
		"<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>", "<|reserved_special_token_1|>",
		"<|finetune_right_pad_id|>", "<|reserved_special_token_2|>", "<|start_header_id|>", "<|end_header_id|>",
		"<|eom_id|>", "<|eot_id|>", "<|python_tag|>",
	})
	return vocabulary{model: "gpt2", pre: "llama-bpe", tokens: tokens, types: types, merges: merges,
		bos: uint32(first), eos: uint32(first + 9), unk: -1, pad: -1, addBOS: true,
		chatTemplate: "{{- bos_token }}{%- for message in messages %}{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}{%- endfor %}{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}"}
}

// qwen2Vocab is Qwen 2/2.5/3's layout: byte-level BPE, then <|endoftext|>,
// <|im_start|>, <|im_end|>. No BOS is added; eos is <|im_end|> and padding
// <|endoftext|>, as in the instruct GGUFs.
func qwen2Vocab() vocabulary {
	tokens, types, merges, first := byteLevelVocab([]string{"<|endoftext|>", "<|im_start|>", "<|im_end|>"})
	return vocabulary{model: "gpt2", pre: "qwen2", tokens: tokens, types: types, merges: merges,
		bos: uint32(first), eos: uint32(first + 2), unk: -1, pad: first, addBOS: false,
		chatTemplate: "{%- for message in messages %}{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"}
}

// mistralVocab is Mistral 7B v0.3's layout: <unk>, <s>, </s>, its control
// tokens, then the byte tokens and word pieces of the SPM fixture.
func mistralVocab() vocabulary {
	spmTokens, spmScores, spmTypes := Vocab()
	controls := []string{"[INST]", "[/INST]", "[TOOL_CALLS]", "[AVAILABLE_TOOLS]", "[/AVAILABLE_TOOLS]", "[TOOL_RESULTS]", "[/TOOL_RESULTS]"}
	tokens := append(append([]string{}, spmTokens[:3]...), controls...)
	types := append([]int32{}, spmTypes[:3]...)
	for range controls {
		types = append(types, typeControl)
	}
	tokens = append(tokens, spmTokens[3:]...)
	types = append(types, spmTypes[3:]...)
	scores := make([]float32, len(tokens))
	copy(scores[len(controls)+3:], spmScores[3:])
	return vocabulary{model: "llama", pre: "default", tokens: tokens, scores: scores, types: types,
		bos: 1, eos: 2, unk: 0, pad: -1, addBOS: true,
		chatTemplate: "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% else %}{{ message['content'] + eos_token }}{% endif %}{% endfor %}"}
}

// TinyLlama3 is a Llama 3.2-style base: byte-level BPE (pre-tokenizer
// "llama-bpe", <|begin_of_text|> … <|eot_id|>), grouped-query attention
// (8 heads, 2 for k/v, as 32/8 in the 1B), rope.freq_base 500000 and tied
// embeddings: no output.weight, as Llama 3.2 1B and 3B ship. F32, 2 layers,
// width 64, 319 tokens, about 470 KB.
func TinyLlama3() Base {
	return Base{Arch: "llama", Layers: 2, Embd: 64, Heads: 8, KVHeads: 2, FF: 192, Ctx: 256, Seed: 7,
		Tokenizer: TokenizerLlama3, Tied: true, RopeBase: 500000, Name: "Llama 3.2 Tiny Instruct"}
}

// TinyQwen3 is a Qwen 3 base, which Ollama runs only on its Go engine
// (ollamarunner): byte-level BPE (pre-tokenizer "qwen2", ChatML tokens),
// per-head q/k RMS norms, no q/k/v biases, rope.freq_base 1000000. F32, 2
// layers, width 64, 4 heads (2 for k/v), 311 tokens, about 460 KB. Like Qwen3-8B and larger it has its
// own output.weight; the tied case is TinyLlama3's.
//
// Ollama v0.24.0's Go engine cannot load LoRA, so merging is the only way to
// apply an adapter to it.
func TinyQwen3() Base {
	return Base{Arch: "qwen3", Layers: 2, Embd: 64, Heads: 4, KVHeads: 2, FF: 128, Ctx: 256, Seed: 6,
		Tokenizer: TokenizerQwen2, RopeBase: 1e6, Name: "Qwen3 Tiny"}
}
