#!/usr/bin/env bash
# Builds llama.cpp's llama-server (which Ollama >= 0.30 runs every GGUF
# through), llama-export-lora, llama-quantize and llama-completion, once per
# machine, into a cache outside the clone. Prints the directory that holds
# them (a `lib/ollama` directory, the layout Ollama looks for) on stdout.
#
# Ollama's own CMake fetches llama.cpp from GitHub, which the test bed cannot
# reach, so the source comes from the git bundle that the npm package
# node-llama-cpp ships, and the build uses Ollama's own `llama/server` CMake
# project (from the Go module cache) with its compat patch applied by hand
# (see shared/OLLAMA.md). Cold: about 25 minutes on 2 busy cores, niced.
#
# The result is keyed by the llama.cpp commit, the patches and the CMake
# flags; a second clone on the same machine reuses it, and concurrent callers
# wait for one build (flock).
#
# Usage: scripts/llamacpp.sh   (prints <cache>/llama.cpp-<key>/lib/ollama)
set -euo pipefail

nlc_version=3.21.1      # node-llama-cpp: carries llama.cpp 80fb11a (0.4.0-dev)
ollama_cmake=v0.34.4    # Ollama's llama/server CMake project and compat patch

root=$(cd "$(dirname "$0")/.." && pwd)
cache="${XDG_CACHE_HOME:-$HOME/.cache}/adapterd-testbed"
mkdir -p "$cache"

need_pkgs=()
command -v cmake >/dev/null || need_pkgs+=(cmake)
command -v ninja >/dev/null || need_pkgs+=(ninja-build)
command -v git >/dev/null || need_pkgs+=(git)
command -v g++ >/dev/null || need_pkgs+=(g++)
command -v npm >/dev/null || need_pkgs+=(nodejs npm)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "llamacpp: installing ${need_pkgs[*]}" >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -o DPkg::Lock::Timeout=600 -y -qq "${need_pkgs[@]}") >&2
  else
    echo "llamacpp: missing tools; run: sudo apt-get install -y ${need_pkgs[*]}" >&2
    exit 1
  fi
fi

exec 9>"$cache/llama.cpp.lock"
flock 9

# The source: node-llama-cpp's git bundle. --ignore-scripts: its install
# script would download or build binaries; --omit=optional skips its
# prebuilt platform packages (hundreds of MB of CUDA/Vulkan builds).
nlc="$cache/node-llama-cpp-$nlc_version"
bundle="$nlc/node_modules/node-llama-cpp/llama/gitRelease.bundle"
if [ ! -f "$bundle" ]; then
  echo "llamacpp: fetching node-llama-cpp@$nlc_version from npm for its llama.cpp bundle" >&2
  mkdir -p "$nlc"
  (cd "$nlc" && npm i -E "node-llama-cpp@$nlc_version" --ignore-scripts --omit=optional \
    --no-audit --no-fund --loglevel=error) >&2
fi
commit=$(git bundle list-heads "$bundle" | awk '$2 == "HEAD" { print $1 }')

ollama=$(cd "$cache" && GOFLAGS=-mod=mod go mod download -json "github.com/ollama/ollama@$ollama_cmake" |
  sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
if [ -z "$ollama" ] || [ ! -d "$ollama/llama/server" ]; then
  echo "llamacpp: go mod download github.com/ollama/ollama@$ollama_cmake gave no llama/server; check GOPROXY" >&2
  exit 1
fi

# CPU only, one CPU variant, no dynamic backends (llama-export-lora needs
# them linked in), no network code.
flags=(
  -G Ninja
  -DCMAKE_BUILD_TYPE=Release
  -DBUILD_SHARED_LIBS=ON
  -DGGML_NATIVE=OFF
  -DGGML_CPU_ALL_VARIANTS=OFF
  -DGGML_BACKEND_DL=OFF
  -DLLAMA_CURL=OFF
  -DLLAMA_OPENSSL=OFF
  -DOLLAMA_LLAMA_CPP_SKIP_COMPAT_PATCH=ON
)
patches=("$ollama/llama/compat/001-llama-cpp-hooks.patch" "$root/scripts/llamacpp/content-only-utf8.patch")
flagkey=$(printf '%s\n' "$ollama_cmake" "${flags[@]}" | sha256sum | cut -c1-8)
key=$( (echo "$commit $flagkey"; cat "${patches[@]}" "$ollama"/llama/compat/*.cpp "$ollama"/llama/compat/*.h) | sha256sum | cut -c1-12)
out="$cache/llama.cpp-${commit:0:12}-$key"
tools=(llama-server llama-quantize llama-export-lora llama-completion)

if [ -x "$out/lib/ollama/llama-server" ]; then
  echo "llamacpp: ready in $out/lib/ollama" >&2
  echo "$out/lib/ollama"
  exit 0
fi

# The build directory is keyed by commit and flags only, and kept: a changed
# patch recompiles just the files it touches.
work="$cache/llama.cpp-build-${commit:0:12}-$flagkey"
src="$work/src"
if [ ! -d "$src/.git" ]; then
  rm -rf "$work"
  mkdir -p "$work"
  git clone -q --no-checkout "$bundle" "$src"
fi
git -C "$src" -c advice.detachedHead=false checkout -q -f "$commit"
git -C "$src" clean -q -fdx
for p in "${patches[@]}"; do
  git -C "$src" apply "$p"
done

echo "llamacpp: building llama.cpp ${commit:0:7} (cold: about 25 minutes on 2 cores)" >&2
start=$(date +%s)
OLLAMA_LLAMA_CPP_SOURCE="$src" cmake -S "$ollama/llama/server" -B "$work/build" "${flags[@]}" >"$work/configure.log" 2>&1 ||
  { tail -30 "$work/configure.log" >&2; exit 1; }
nice -n 19 cmake --build "$work/build" --target "${tools[@]}" -j "$(nproc)" >"$work/build.log" 2>&1 ||
  { tail -30 "$work/build.log" >&2; exit 1; }

rm -rf "$out.tmp"
mkdir -p "$out.tmp/lib/ollama"
for t in "${tools[@]}"; do
  cp "$work/build/bin/$t" "$out.tmp/lib/ollama/"
done
cp -P "$work/build/bin/"*.so* "$out.tmp/lib/ollama/"
cp "$src/LICENSE" "$out.tmp/lib/ollama/LLAMA_CPP_LICENSE"
rm -rf "$out"
mv "$out.tmp" "$out"
echo "llamacpp: built in $(( $(date +%s) - start ))s, ready in $out/lib/ollama" >&2
echo "$out/lib/ollama"
