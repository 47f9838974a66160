#!/usr/bin/env bash
# The main job, end to end on the real test bed: builds Ollama v0.24.0 from
# the module proxy (once), builds adapterd, and runs cmd/demo, which drops an
# adapter folder and prints a generation through the model adapterd created.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/testbed.sh 0.24.0
mkdir -p .testbed/bin
go build -o .testbed/bin/adapterd ./cmd/adapterd
go run ./cmd/demo --adapterd "$PWD/.testbed/bin/adapterd"
