// Package modelfile renders the Ollama Modelfile equivalent to what
// adapterd creates, for `adapterd modelfile` and for people who want to
// reproduce a model with `ollama create` by hand.
//
// Values come from user files (sidecars, templates, system prompts), so
// rendering must never let a value turn into extra commands. Ollama's
// parser (github.com/ollama/ollama/parser) has no escape sequences: a
// value is bare, in "double quotes" or in """triple quotes""", and a
// quoted value ends at the first line break where the text so far, less
// trailing blanks, ends with the closing quote. It also drops every
// non-printing character except space, tab, CR and LF. Render therefore
// picks a quoting that parses back to exactly the value, and returns an
// error for the few values no quoting can carry, rather than emit a
// Modelfile that means something else.
package modelfile
