#!/usr/bin/env bash
# Builds every release artefact into dist/: static adapterd binaries, .deb
# and .rpm for amd64 and arm64, and the OCI image tarball
# (adapterd-<version>-oci.tar), stamped with the version git describe gives.
# The builder is deploy/cmd/package (its own Go module); docs/install.md
# says how operators install each artefact.
#
# Usage: scripts/package.sh [-out DIR]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root/deploy"
exec go run ./cmd/package -repo "$root" -out "$root/dist" "$@"
