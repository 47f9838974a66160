#!/usr/bin/env bash
# The one test command (README, .ci/run): installs what the test bed needs,
# builds the real Ollama test servers, then runs every test with -race
# against them. Nothing is skipped: no -short here.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
scripts/testbed.sh
# The S3 server for the s3 source's and mirrors' tests.
scripts/seaweedfs.sh
# The official Hub client (@huggingface/hub), pinned by its lock file, that
# internal/hub's tests run against the fake hub.
(cd internal/hub/testdata && npm ci --no-audit --no-fund --loglevel=error)
echo "test: bed ready after $(( $(date +%s) - start ))s" >&2
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
  echo "gofmt would change: $unformatted" >&2
  exit 1
fi
go vet ./...
# -p 2: one package per core; each package starts its own Ollama servers.
mkdir -p .testbed
# The log lives in the checkout: /tmp may be cleaned by other jobs mid-run.
log=.testbed/test.log
go test -race -p 2 -timeout 40m -count=1 ./... 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
pass=$(grep -c '^ok ' "$log" || true)
fail=$(grep -c '^FAIL\s' "$log" || true)
echo "test: $(( $(date +%s) - start ))s in all" >&2
echo "packages: $pass passed, $fail failed"
exit "$status"
