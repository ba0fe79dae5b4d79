#!/usr/bin/env bash
# The README's main job: the local sweep in sweeps/local-sim.yaml, against the simulated server.
#
# Builds kvsweep, prints the sweep's job matrix, then runs `kvsweep sweep --local`: every cell in
# turn (simulated server, metrics scraper, trace replay), then the collect step (summary.csv,
# Pareto frontiers, plots and report.html). Re-running resumes: cells already ok are skipped.
# The simulator runs 20× faster than real time (sweeps/local-sim.yaml scales the replay's waits
# by 1/20 to match), so each 14 s run models about 5 minutes of serving; the table shows the
# modelled H100's figures (collect puts them back into its time).
# Usage: scripts/demo.sh [SPEC] [OUT]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

SPEC=${1:-sweeps/local-sim.yaml}
OUT=${2:-results/local-sim}

cargo build --release --locked
KVSWEEP=$PWD/target/release/kvsweep

echo "== job matrix of $SPEC"
"$KVSWEEP" matrix "$SPEC" --format table

echo "== running the sweep into $OUT (every number is from the simulated server)"
"$KVSWEEP" sweep "$SPEC" --local --out "$OUT"

echo "== results"
# The columns by name (summary.csv gains columns over time; positions would drift).
SHOWN=cell,users,offload,valid,requests_ok,total_tps_per_gpu,ttft_p50_ms,tpot_p50_ms,e2e_norm_intvty_p90
awk -F, -v want="$SHOWN" '
  NR == 1 { n = split(want, w, ","); for (i = 1; i <= NF; i++) at[$i] = i }
  { row = ""; for (j = 1; j <= n; j++) row = row (j > 1 ? "," : "") (w[j] in at ? $(at[w[j]]) : "?"); print row }
' "$OUT/summary.csv" | column -s, -t
echo "== the offload story (the first line of $OUT/report.html)"
sed -n 's|^<p class="story">\(.*\)</p>$|\1|p' "$OUT/report.html" | sed 's|&#x2f;|/|g'
echo "== Pareto plots in $OUT/plots, the report in $OUT/report.html"
