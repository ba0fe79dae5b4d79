#!/usr/bin/env bash
# The README's main job: the local sweep in sweeps/local-sim.yaml, against the simulated server.
#
# Today it builds kvsweep, expands the sweep into its job matrix and renders every cell's runner
# script into results/local-sim/. Running the cells, collecting them and drawing the Pareto report
# arrive with `kvsweep sweep --local` (see README.md, "Status").
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

SPEC=${1:-sweeps/local-sim.yaml}
OUT=${2:-results/local-sim}

cargo build --release --locked
KVSWEEP=target/release/kvsweep

echo "== job matrix of $SPEC"
"$KVSWEEP" matrix "$SPEC" --format table

echo "== runner scripts"
mkdir -p "$OUT"
cells=$("$KVSWEEP" matrix "$SPEC" 2>/dev/null | python3 -c 'import json, sys; print("\n".join(e["name"] for e in json.load(sys.stdin)["include"]))')
while IFS= read -r cell; do
  "$KVSWEEP" render "$SPEC" --cell "$cell" --out "$OUT/$cell" >/dev/null
  echo "$OUT/$cell/run.sh"
done <<<"$cells"

echo "== next: running the cells, collect and the Pareto report come with \`kvsweep sweep --local\` (issues #4-#8)"
