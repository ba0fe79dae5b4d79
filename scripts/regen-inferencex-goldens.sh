#!/usr/bin/env bash
# Regenerates the InferenceX master-config goldens in tests/fixtures/inferencex/ from an
# InferenceX checkout: copies its master configs, runner config and LICENSE, then runs its own
# generator (utils/matrix_logic/generate_sweep_configs.py full-sweep ... --no-evals; needs
# python3 with pydantic and pyyaml) on every case of cases.txt. A case's job list goes to
# golden/NAME.json.gz (gzip -n, so the bytes only change when the list does); a case the
# generator refuses gets golden/NAME.refused holding the end of its error.
#
# Usage: scripts/regen-inferencex-goldens.sh PATH_TO_INFERENCEX_CHECKOUT
set -euo pipefail

if [[ $# -ne 1 || ! -f "$1/utils/matrix_logic/generate_sweep_configs.py" ]]; then
    echo "usage: $0 PATH_TO_INFERENCEX_CHECKOUT (a folder with utils/matrix_logic/generate_sweep_configs.py)" >&2
    exit 2
fi
inferencex=$(cd "$1" && pwd)
fixtures=$(cd "$(dirname "$0")/../tests/fixtures/inferencex" && pwd)
generator="$inferencex/utils/matrix_logic/generate_sweep_configs.py"

cp "$inferencex/LICENSE" "$fixtures/LICENSE"
for f in nvidia-master.yaml amd-master.yaml runners.yaml; do
    cp "$inferencex/configs/$f" "$fixtures/configs/$f"
done
if commit=$(git -C "$inferencex" rev-parse --short=9 HEAD 2>/dev/null); then
    echo "InferenceX commit $commit: update the commit named in $fixtures/README.md if it changed"
fi

cd "$fixtures"
rm -f golden/*.json.gz golden/*.refused
count=0
while IFS='|' read -r name files args; do
    [[ "$name" == \#* ]] && continue
    read -r name <<<"$name"
    [[ -z "$name" ]] && continue
    read -r -a file_list <<<"$files"
    read -r -a arg_list <<<"$args"
    if out=$(python3 "$generator" full-sweep --config-files "${file_list[@]}" "${arg_list[@]}" --no-evals 2>/tmp/regen-goldens.err); then
        printf '%s\n' "$out" | gzip -n -9 >"golden/$name.json.gz"
        echo "$name: $(printf '%s' "$out" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))') jobs"
    else
        grep -v -e '^\s*$' -e 'For further information' /tmp/regen-goldens.err | tail -n 2 >"golden/$name.refused"
        echo "$name: refused: $(tail -n 1 "golden/$name.refused")"
    fi
    count=$((count + 1))
done <cases.txt
rm -f /tmp/regen-goldens.err
echo "$count cases"
