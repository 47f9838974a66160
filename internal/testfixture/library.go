package testfixture

// Library is what an Ollama library model carries besides its weights: the
// TEMPLATE, SYSTEM, PARAMETER (stop tokens), LICENSE and MESSAGE layers.
// Library returns a base's, in the shape of the library model of its family.
type Library struct {
	Template string
	System   string
	Stop     []string
	License  string
	// Messages are few-shot turns, role then content.
	Messages [][2]string
}

// Library returns the layers Ollama's library ships with b's family: the
// Go template, the stop tokens of its chat format, its license, and (as
// some library models have) a system prompt and a few-shot exchange.
func (b Base) Library() Library {
	l := Library{
		System:   "You are a helpful assistant.",
		Messages: [][2]string{{"user", "hello"}, {"assistant", "hello world"}},
	}
	switch {
	case b.Tokenizer == TokenizerLlama3:
		l.Template = `<|start_header_id|>system<|end_header_id|>

{{ if .System }}{{ .System }}{{ end }}<|eot_id|>{{ range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>

{{ .Content }}<|eot_id|>{{ end }}<|start_header_id|>assistant<|end_header_id|>

`
		l.Stop = []string{"<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"}
		l.License = "LLAMA 3.2 COMMUNITY LICENSE AGREEMENT (fixture excerpt)"
	case b.Tokenizer == TokenizerQwen2:
		l.Template = `{{- if .System }}<|im_start|>system
{{ .System }}<|im_end|>
{{ end }}{{- range .Messages }}<|im_start|>{{ .Role }}
{{ .Content }}<|im_end|>
{{ end }}<|im_start|>assistant
`
		l.Stop = []string{"<|im_start|>", "<|im_end|>"}
		l.License = "Apache License Version 2.0 (fixture excerpt)"
	case b.Tokenizer == TokenizerMistral:
		l.Template = `{{- range $i, $_ := .Messages }}{{- if eq .Role "user" }}[INST] {{ if and $.System (eq $i 0) }}{{ $.System }}

{{ end }}{{ .Content }}[/INST]{{- else if eq .Role "assistant" }} {{ .Content }}</s>{{- end }}{{- end }}`
		l.Stop = []string{"[INST]", "[/INST]"}
		l.License = "Apache License Version 2.0 (fixture excerpt)"
	case b.Arch == "phi3":
		l.Template = `{{ if .System }}<|system|>
{{ .System }}<|end|>
{{ end }}{{ if .Prompt }}<|user|>
{{ .Prompt }}<|end|>
{{ end }}<|assistant|>
`
		l.Stop = []string{"<|end|>", "<|user|>", "<|assistant|>"}
		l.License = "MIT License (fixture excerpt)"
	default:
		l.Template = `[INST] <<SYS>>{{ .System }}<</SYS>>

{{ .Prompt }} [/INST]
`
		l.Stop = []string{"[INST]", "[/INST]", "<<SYS>>", "<</SYS>>"}
		l.License = "LLAMA 2 COMMUNITY LICENSE AGREEMENT (fixture excerpt)"
	}
	return l
}
