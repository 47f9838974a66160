module ggmlref

go 1.26.0

require github.com/ollama/ollama v0.24.0

require golang.org/x/sync v0.17.0 // indirect
