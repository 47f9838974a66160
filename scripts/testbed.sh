#!/usr/bin/env bash
# Builds the real Ollama servers that the tests run against, from the Go module
# proxy, into .testbed/bin (git-ignored; $ADAPTERD_TESTBED/bin when set). A
# binary that is already there is kept, so only a fresh clone pays for the
# cold build. As root it also installs the Debian packages the bed needs
# (headers, npm) and those scripts/test.sh names in ADAPTERD_TEST_PKGS.
#
# Ollama >= 0.30 runs every GGUF through an external llama-server, which it
# looks for in <dir of its executable>/../lib/ollama. For those versions the
# bed also builds llama.cpp (scripts/llamacpp.sh, once per machine) and lays
# each one out as an installed prefix of its own:
#   .testbed/ollama-<v>/bin/ollama
#   .testbed/ollama-<v>/lib/ollama -> <cache>/llama.cpp-<key>/lib/ollama
#   .testbed/bin/ollama-<v>        -> ../ollama-<v>/bin/ollama
# Ollama resolves the link to its executable, so it finds its llama-server;
# v0.24.0, which compiles llama.cpp in, stays a plain file in bin/ and never
# sees that lib/ollama (it would try to load its libraries as backends).
# llama.cpp's tools that tests and benchmarks run as peers are linked into
# bin/ as well: llama-export-lora, llama-quantize, llama-completion.
#
# Usage: scripts/testbed.sh [VERSION...]   (default: 0.24.0 0.33.3 0.34.4)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
bed="${ADAPTERD_TESTBED:-$root/.testbed}"
bin="$bed/bin"
# The headers live at a path that does not depend on the checkout: the path
# is part of CGO_CPPFLAGS, so a fixed one lets every clone reuse the Go build
# cache instead of recompiling llama.cpp (minutes on 2 cores).
inc="${XDG_CACHE_HOME:-$HOME/.cache}/adapterd-testbed/include"
versions=("$@")
[ ${#versions[@]} -gt 0 ] || versions=(0.24.0 0.33.3 0.34.4)

# llama.cpp's vendor/ folder is not in the module zip; three headers come from
# elsewhere (see shared/OLLAMA.md).
need_pkgs=()
[ -f /usr/include/nlohmann/json.hpp ] || need_pkgs+=(nlohmann-json3-dev)
[ -f /usr/include/stb/stb_image.h ] || need_pkgs+=(libstb-dev)
# internal/hub checks its fake hub against the official JS client.
command -v npm >/dev/null || need_pkgs+=(nodejs npm)
# Packages only the tests need (chromium, the packaging tools) come from
# ADAPTERD_TEST_PKGS, which scripts/test.sh sets, so the demo installs none.
for t in ${ADAPTERD_TEST_PKGS:-}; do
  command -v "${t%%:*}" >/dev/null || need_pkgs+=("${t#*:}")
done
if [ ${#need_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "testbed: installing ${need_pkgs[*]}" >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}") >&2
  else
    echo "testbed: missing packages; run: sudo apt-get install -y ${need_pkgs[*]}" >&2
    exit 1
  fi
fi

if [ ! -f "$inc/miniaudio/miniaudio.h" ]; then
  dir=$(cd /tmp && GOFLAGS=-mod=mod go mod download -json github.com/gen2brain/malgo@v0.11.24 | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  mkdir -p "$inc/miniaudio"
  cp "$dir/miniaudio.h" "$inc/miniaudio/miniaudio.h"
fi

# external_llama reports whether Ollama v$1 needs an external llama-server.
external_llama() {
  [ "$(printf '%s\n' 0.30.0 "$1" | sort -V | head -1)" = 0.30.0 ]
}
# link points $2 at $1, atomically, so that a test starting a server at the
# same moment sees either the old or the new path, never none.
link() {
  ln -sfn "$1" "$2.tmp.$$" && mv -T "$2.tmp.$$" "$2"
}

# The Ollama servers first, so that a version that needs no llama-server is
# usable while llama.cpp builds.
mkdir -p "$bin"
need_llamacpp=()
for v in "${versions[@]}"; do
  out="$bin/ollama-$v"
  if external_llama "$v"; then
    need_llamacpp+=("$v")
    prefix="$bed/ollama-$v"
    mkdir -p "$prefix/bin" "$prefix/lib"
    # A bed built before this layout has a plain binary in bin/: move it.
    if [ -f "$out" ] && [ ! -L "$out" ] && [ ! -x "$prefix/bin/ollama" ]; then
      cp "$out" "$prefix/bin/ollama.tmp" && mv "$prefix/bin/ollama.tmp" "$prefix/bin/ollama"
    fi
    out="$prefix/bin/ollama"
  fi
  if [ ! -x "$out" ]; then
    echo "testbed: building ollama v$v (cold: minutes)" >&2
    tmp=$(mktemp -d)
    (cd /tmp && CGO_ENABLED=1 CGO_CPPFLAGS="-I$inc" GOBIN="$tmp" \
      go install -ldflags "-X github.com/ollama/ollama/version.Version=$v" "github.com/ollama/ollama@v$v")
    mv "$tmp/ollama" "$out.tmp" && mv "$out.tmp" "$out"
    rm -rf "$tmp"
  fi
done

if [ ${#need_llamacpp[@]} -gt 0 ]; then
  llamacpp=$("$root/scripts/llamacpp.sh")
  for v in "${need_llamacpp[@]}"; do
    link "$llamacpp" "$bed/ollama-$v/lib/ollama"
    link "../ollama-$v/bin/ollama" "$bin/ollama-$v"
  done
  for t in llama-export-lora llama-quantize llama-completion; do
    link "$llamacpp/$t" "$bin/$t"
  done
fi
echo "testbed: ready in $bin" >&2
