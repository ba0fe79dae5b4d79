#!/usr/bin/env bash
# The README's main job: the local sweep in sweeps/local-sim.yaml, against the simulated server.
#
# Builds kvsweep, expands the sweep into its job matrix, renders every cell's runner script and runs
# it (simulated server, metrics scraper, trace replay), then prints one line per cell. Collecting
# the cells into Pareto frontiers, plots and a report arrives with `kvsweep sweep --local`
# (issues #7 and #8). Usage: scripts/demo.sh [SPEC] [OUT] [DURATION_S]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

SPEC=${1:-sweeps/local-sim.yaml}
OUT=${2:-results/local-sim}
DURATION=${3:-10}

cargo build --release --locked
KVSWEEP=$PWD/target/release/kvsweep

echo "== job matrix of $SPEC"
"$KVSWEEP" matrix "$SPEC" --format table

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

cells=$("$KVSWEEP" matrix "$SPEC" 2>/dev/null | python3 -c 'import json, sys; print("\n".join(e["name"] for e in json.load(sys.stdin)["include"]))')
mkdir -p "$OUT"
echo "== running each cell for ${DURATION}s (all numbers are simulated)"
while IFS= read -r cell; do
  rm -rf "${OUT:?}/$cell"
  "$KVSWEEP" render "$SPEC" --cell "$cell" --out "$OUT/$cell" --duration "$DURATION" --port "$(free_port)" >/dev/null
  if KVSWEEP_BIN=$KVSWEEP bash "$OUT/$cell/run.sh" >"$OUT/$cell/run.log" 2>&1; then
    echo "  $cell: ok"
  else
    echo "  $cell: failed (see $OUT/$cell/run.log)"
  fi
done <<<"$cells"

echo "== results (simulated server)"
# shellcheck disable=SC2086 # one argument per cell name
python3 - "$OUT" $cells <<'PY'
import json, pathlib, sys
rows = []
for name in sys.argv[2:]:
    cell = pathlib.Path(sys.argv[1]) / name
    res = cell / "results"
    try:
        status = json.loads((res / "status.json").read_text())["status"]
        s = json.loads((res / "summary.json").read_text())
    except (OSError, ValueError, KeyError):
        continue
    hit = s["cache"]["hit_rate"]
    rows.append((cell.name, status, s["requests"]["ok"], s["throughput"]["requests_per_s"],
                 s["ttft_ms"].get("p50", 0.0), s["throughput"]["output_tokens_per_s"], 0.0 if hit is None else hit))
print(f"{'cell':44} {'status':7} {'ok':>5} {'req/s':>7} {'TTFT p50 ms':>12} {'out tok/s':>10} {'hit rate':>9}")
for r in rows:
    print(f"{r[0]:44} {r[1]:7} {r[2]:>5} {r[3]:>7.2f} {r[4]:>12.1f} {r[5]:>10.1f} {r[6]:>9.1%}")
PY
echo "== per-cell artifacts in $OUT/<cell>/results; Pareto frontiers and the report come with \`kvsweep sweep --local\` (issues #7, #8)"
