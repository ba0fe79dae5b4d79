#!/usr/bin/env bash
# Regenerates the InferenceX goldens of the AgentX fixture cells: runs InferenceX's own
# processor (utils/agentic/aggregation/process_agentic_result.py) on the AIPerf-compatible
# exports `kvsweep collect` writes for tests/fixtures/agentx/cells/*, and its validator
# (utils/agentic/validation/validate_agentic_result.py) on them, and stores the aggregates in
# tests/fixtures/agentx/golden/ with InferenceX's license. tests/it/agentx_results.rs compares
# kvsweep's own aggregate with them, without Python.
#
# Usage: scripts/regen-agentx-goldens.sh INFERENCEX_DIR
# Needs: python3 (InferenceX's processor uses the standard library only), a built kvsweep
# (cargo build). Run it again after a change to the fixture cells or to InferenceX's processor.
set -euo pipefail

if [[ $# -ne 1 || ! -f "$1/utils/agentic/aggregation/process_agentic_result.py" ]]; then
    echo "usage: $0 INFERENCEX_DIR (a checkout of InferenceX)" >&2
    exit 2
fi
inferencex=$(cd "$1" && pwd)
repo=$(cd "$(dirname "$0")/.." && pwd)
fixture="$repo/tests/fixtures/agentx"
golden="$fixture/golden"
kvsweep="${KVSWEEP:-$repo/target/debug/kvsweep}"
[[ -x "$kvsweep" ]] || { echo "build kvsweep first (cargo build), or set KVSWEEP" >&2; exit 2; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The cells as the test prepares them: their traces (named in traces.txt) copied beside them
# and cell.json pointing there.
mkdir -p "$work/traces"
while read -r name; do
    [[ -n "$name" ]] && cp "$repo/traces/samples/kv-cache-tester/$name" "$work/traces/"
done < "$fixture/traces.txt"
cp -r "$fixture/cells" "$work/cells"
for plan in "$work"/cells/*/cell.json; do
    python3 - "$plan" "$work/traces" <<'EOF'
import json, sys
path, traces = sys.argv[1], sys.argv[2]
with open(path) as f:
    plan = json.load(f)
plan["traces"] = traces
with open(path, "w") as f:
    json.dump(plan, f, indent=2)
EOF
done

"$kvsweep" collect "$work/cells" --out "$work/collect" > /dev/null

rm -rf "$golden"
mkdir -p "$golden"
for env in "$work"/collect/agentx/*/inferencex.env; do
    result_dir=$(dirname "$env")
    (
        set -a
        # shellcheck disable=SC1090
        . "$env"
        set +a
        cd "$inferencex"
        # An empty Hugging Face cache: the processor's expected output lengths come from the
        # public trace corpus there, which kvsweep does not read.
        HF_HOME="$work/no-hf" RESULT_DIR="$result_dir" AGENTIC_OUTPUT_DIR="$golden" \
            python3 -m utils.agentic.aggregation.process_agentic_result
        python3 utils/agentic/validation/validate_agentic_result.py \
            "$result_dir/aiperf_artifacts" --failed-request-threshold 0.10
    ) | sed "s#$golden/##" | tee -a "$golden/processor.log"
done
cp "$inferencex/LICENSE" "$golden/LICENSE-InferenceX"
chmod 644 "$golden/LICENSE-InferenceX"
inferencex_commit=$(git -C "$inferencex" rev-parse HEAD 2>/dev/null || echo "unknown")
cat > "$golden/README.md" <<EOF
# InferenceX goldens of the AgentX fixture cells

Made by \`scripts/regen-agentx-goldens.sh\` from the cells in \`../cells\`: each
\`<RESULT_FILENAME>.json\` is what InferenceX's \`process_agentic_result.py\` (InferenceX commit
$inferencex_commit, Apache-2.0, see \`LICENSE-InferenceX\`) made from the exports
\`kvsweep collect\` wrote for the cell; \`processor.log\` is its output and that of
\`validate_agentic_result.py --failed-request-threshold 0.10\`, which accepted each one.
EOF
echo "goldens in $golden"
