#!/usr/bin/env bash
# Usage: scripts/fuzz.sh [--smoke] [SECONDS]
#
# Runs every fuzz target (fuzz/fuzz_targets/) for SECONDS each (default 60) with cargo fuzz, after
# seeding its corpus from the repository and the shared sample traces. A crash stops the script
# non-zero and leaves the input in fuzz/artifacts/TARGET/; keep it as a regression test by copying
# it to fuzz/regressions/TARGET/ (tests/it/fuzz_regressions.rs runs them).
#
# Where the nightly toolchain is installed the targets build optimised with AddressSanitizer.
# Otherwise, and always with --smoke (what scripts/test.sh runs), they build on the stable
# toolchain without a sanitizer: cargo fuzz needs no unstable flag then, the unoptimised build
# takes about 3 minutes on 2 cores instead of 10, and in safe Rust the findings that matter here
# (panics, runaway allocation, hangs) need no sanitizer to show.
set -euo pipefail
cd "$(dirname "$0")/.."
SMOKE=0
if [[ ${1:-} == --smoke ]]; then
  SMOKE=1
  shift
fi
EACH=${1:-60}
TARGETS=(spec kvct mooncake sse prometheus artifact_zip)

if [[ $SMOKE == 0 ]] && cargo +nightly --version >/dev/null 2>&1; then
  FUZZ=(cargo +nightly fuzz)
  BUILD=(-O)
  mode="nightly, optimised, AddressSanitizer"
else
  FUZZ=(cargo fuzz)
  BUILD=(--dev --sanitizer none)
  mode="stable, unoptimised, no sanitizer"
fi
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --version 0.13.2 --locked

seed() {
  local target=$1
  shift
  mkdir -p "fuzz/corpus/$target"
  local f
  for f in "$@"; do
    if [[ -f "$f" ]]; then
      cp "$f" "fuzz/corpus/$target/"
    fi
  done
}
SAMPLES=traces/samples/kv-cache-tester
seed spec sweeps/*.yaml
mapfile -t sample_traces < <(find "$SAMPLES" -name '*.json' 2>/dev/null | sort | head -n 5)
seed kvct "${sample_traces[@]}" traces/generated/gen_10_0000.json
seed prometheus tests/fixtures/metrics/*.prom
mkdir -p fuzz/corpus/mooncake fuzz/corpus/sse fuzz/corpus/artifact_zip
printf '%s\n' '{"timestamp": 0, "input_length": 1024, "output_length": 8, "hash_ids": [1, 2], "session_id": "a"}' \
  '{"timestamp": 10, "input_length": 1536, "output_length": 8, "hash_ids": [1, 2, 3], "session_id": "a", "delay": 5}' \
  >fuzz/corpus/mooncake/seed.jsonl
printf 'data: {"choices":[{"text":"a"}]}\n\ndata: {"usage":{"prompt_tokens":3}}\n\ndata: [DONE]\n\n' \
  >fuzz/corpus/sse/seed
python3 - <<'PY'
import zipfile
with zipfile.ZipFile("fuzz/corpus/artifact_zip/seed.zip", "w") as z:
    z.writestr("status.json", '{"format_version": 1, "status": "ok", "reason": "completed"}')
    z.writestr("tester/summary.csv", "a,b\n1,2\n")
PY

echo "fuzz.sh: building the targets ($mode)" >&2
(cd fuzz && "${FUZZ[@]}" build "${BUILD[@]}")
summary=()
for t in "${TARGETS[@]}"; do
  log=$(mktemp)
  if ! (cd fuzz && "${FUZZ[@]}" run "${BUILD[@]}" "$t" "corpus/$t" -- \
      -max_total_time="$EACH" -max_len=262144 -rss_limit_mb=2048 -timeout=10) >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "fuzz.sh: $t crashed; the input is in fuzz/artifacts/$t/" >&2
    exit 1
  fi
  runs=$(grep -Eo 'Done [0-9]+ runs' "$log" | tail -n 1 | grep -Eo '[0-9]+' || echo "?")
  cov=$(grep -Eo 'cov: [0-9]+' "$log" | tail -n 1 | grep -Eo '[0-9]+' || echo "?")
  summary+=("$t: $runs executions in ${EACH}s ($mode), coverage $cov edges, no crash")
  rm -f "$log"
done
printf '%s\n' "${summary[@]}"
