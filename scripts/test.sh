#!/usr/bin/env bash
# The one test command (README, .ci/run): installs what the test bed needs,
# builds the real Ollama test servers, then runs every test with -race
# against them. Nothing is skipped: no -short here.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
# command:package pairs the tests need beyond the bed: Debian's chromium for
# the status page's browser tests (internal/daemon), and Debian's own
# packaging tools that deploy/release checks the packages and image with.
# Without them those tests fail rather than skip.
ADAPTERD_TEST_PKGS="chromium:chromium lintian:lintian rpm:rpm skopeo:skopeo podman:podman runc:runc systemd-sysusers:systemd" \
  scripts/testbed.sh
# The S3 server for the s3 source's and mirrors' tests.
scripts/seaweedfs.sh
# The official Hub client (@huggingface/hub), pinned by its lock file, that
# internal/hub's tests run against the fake hub.
(cd internal/hub/testdata && npm ci --no-audit --no-fund --loglevel=error)
# axe-core, pinned the same way, that the status page's browser tests run in
# the page to check it against WCAG 2 A and AA.
(cd internal/daemon/testdata/axe && npm ci --no-audit --no-fund --loglevel=error)
echo "test: bed ready after $(( $(date +%s) - start ))s" >&2
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
  echo "gofmt would change: $unformatted" >&2
  exit 1
fi
go vet ./...
# deploy/ is its own module (nfpm, Helm, k8s.io/api stay out of the daemon's
# go.mod): vet it and run its tests too.
(cd deploy && go vet ./...)
# The purego build leaves out quant's and lora's assembly: the scalar
# kernels alone, as on a CPU without AVX2 (short: the ggml reference and
# the servers are the default build's job below).
go vet -tags purego ./...
mkdir -p .testbed
# The log lives in the checkout: /tmp may be cleaned by other jobs mid-run.
log=.testbed/test.log
: >"$log"
# step runs one go test, into the log too; a failing step fails the run
# but the others still run, and the summary below is always printed.
status=0
step() { if ! "$@" 2>&1 | tee -a "$log"; then status=1; fi; }
step go test -race -tags purego -short -count=1 ./internal/quant/ ./internal/lora/
# -p 2: one package per core; each package starts its own Ollama servers.
step go test -race -p 2 -timeout 40m -count=1 ./...
# The release artefacts: packages installed into a throwaway root, lintian,
# rpm, the OCI image under skopeo and podman, the Helm chart. No -race: it
# checks files and manifests, and cross-builds the daemon for two arches.
step bash -c 'cd deploy && go test -timeout 20m -count=1 ./...'
pass=$(grep -c '^ok ' "$log" || true)
fail=$(grep -c '^FAIL\s' "$log" || true)
echo "test: $(( $(date +%s) - start ))s in all" >&2
echo "packages: $pass passed, $fail failed"
exit "$status"
