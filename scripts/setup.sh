#!/usr/bin/env bash
# Set up thermospice on a fresh Debian machine: ngspice from Debian's packages, then a virtual
# environment in .venv with the pinned Python packages. Safe to run again (idempotent).
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

need_apt=()
command -v ngspice >/dev/null 2>&1 || need_apt+=(ngspice)
python3 -c "import venv, ensurepip" >/dev/null 2>&1 || need_apt+=(python3-venv)
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "setup: installing ${need_apt[*]} from Debian's packages"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
# torch is pinned in pyproject.toml: a bare `torch` can pull a multi-GB CUDA build.
# (The grep hides pip's warnings about local mirror folders that exist only on some machines.)
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[test]" 2>&1 \
    | { grep -v "^WARNING: Location .* is ignored" || true; }
echo "setup: ready ($(ngspice -v 2>/dev/null | grep -o 'ngspice-[0-9.]*' | head -1), $(.venv/bin/python --version))"
