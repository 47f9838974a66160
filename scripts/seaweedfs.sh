#!/usr/bin/env bash
# Builds the real S3 server that the s3 source tests run against: SeaweedFS's
# `weed` binary, from the Go module proxy, into .testbed/bin/weed (or
# $ADAPTERD_TESTBED/bin/weed when set). A binary that is already there is
# kept, so only a fresh clone pays for the cold build (about 4 minutes on 2
# cores; the Go build cache makes later builds fast).
#
# `go install` refuses the module because its go.mod has replace directives,
# so the module is downloaded, copied somewhere writable and built in place
# (see shared/S3.md).
#
# Usage: scripts/seaweedfs.sh
set -euo pipefail

version=v0.0.0-20261109003541-7506e5f91cd6 # weed 4.53; Apache-2.0

root=$(cd "$(dirname "$0")/.." && pwd)
bed="${ADAPTERD_TESTBED:-$root/.testbed}"
out="$bed/bin/weed"
if [ -x "$out" ]; then
  echo "seaweedfs: ready at $out" >&2
  exit 0
fi

echo "seaweedfs: building weed $version (cold: about 4 minutes)" >&2
mkdir -p "$bed/bin"
# The scratch copy lives beside the binary, not in /tmp, which other jobs on
# a shared machine may clean mid-build.
tmp=$(mktemp -d "$bed/weed-build.XXXXXX")
trap 'chmod -R u+w "$tmp" 2>/dev/null; rm -rf "$tmp"' EXIT
mkdir -p "$tmp/gotmp"
export GOTMPDIR="$tmp/gotmp" TMPDIR="$tmp/gotmp"
# A scratch module so that `go mod download` does not touch this one.
(cd "$tmp" && go mod init scratch >/dev/null 2>&1)
dir=$(cd "$tmp" && GOFLAGS=-mod=mod go mod download -json "github.com/seaweedfs/seaweedfs@$version" |
  sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
if [ -z "$dir" ] || [ ! -d "$dir" ]; then
  echo "seaweedfs: go mod download github.com/seaweedfs/seaweedfs@$version gave no directory; check GOPROXY" >&2
  exit 1
fi
cp -r "$dir" "$tmp/src"
chmod -R u+w "$tmp/src"
(cd "$tmp/src" && GOFLAGS=-mod=mod go build -o "$tmp/weed" ./weed)
mv "$tmp/weed" "$out.tmp" && mv "$out.tmp" "$out"
echo "seaweedfs: ready at $out" >&2
