#!/usr/bin/env bash
# Builds the real Ollama servers that the tests run against, from the Go module
# proxy, into .testbed/bin (git-ignored). A binary that is already there is
# kept, so only a fresh clone pays for the cold build. As root it also installs
# the Debian packages the tests need (headers, npm, chromium).
#
# Usage: scripts/testbed.sh [VERSION...]   (default: 0.24.0 0.34.4)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
bin="$root/.testbed/bin"
# The headers live at a path that does not depend on the checkout: the path
# is part of CGO_CPPFLAGS, so a fixed one lets every clone reuse the Go build
# cache instead of recompiling llama.cpp (minutes on 2 cores).
inc="${XDG_CACHE_HOME:-$HOME/.cache}/adapterd-testbed/include"
versions=("$@")
[ ${#versions[@]} -gt 0 ] || versions=(0.24.0 0.34.4)

# llama.cpp's vendor/ folder is not in the module zip; three headers come from
# elsewhere (see shared/OLLAMA.md).
need_pkgs=()
[ -f /usr/include/nlohmann/json.hpp ] || need_pkgs+=(nlohmann-json3-dev)
[ -f /usr/include/stb/stb_image.h ] || need_pkgs+=(libstb-dev)
# internal/hub checks its fake hub against the official JS client.
command -v npm >/dev/null || need_pkgs+=(nodejs npm)
# The status page's tests (internal/daemon) drive Debian's chromium; without
# it they fail rather than skip.
command -v chromium >/dev/null || need_pkgs+=(chromium)
# deploy/release checks the packages and the image with Debian's own tools.
for t in lintian:lintian rpm:rpm skopeo:skopeo podman:podman runc:runc systemd-sysusers:systemd; do
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

mkdir -p "$bin"
for v in "${versions[@]}"; do
  out="$bin/ollama-$v"
  if [ -x "$out" ]; then
    continue
  fi
  echo "testbed: building ollama v$v (cold: minutes)" >&2
  tmp=$(mktemp -d)
  (cd /tmp && CGO_ENABLED=1 CGO_CPPFLAGS="-I$inc" GOBIN="$tmp" \
    go install -ldflags "-X github.com/ollama/ollama/version.Version=$v" "github.com/ollama/ollama@v$v")
  mv "$tmp/ollama" "$out.tmp" && mv "$out.tmp" "$out"
  rm -rf "$tmp"
done
echo "testbed: ready in $bin" >&2

# The S3 server for internal/s3source's tests.
"$root/scripts/seaweedfs.sh"
