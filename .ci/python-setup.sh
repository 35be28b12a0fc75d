#!/usr/bin/env bash
# Installs the Python package from this checkout into a venv at target/py-venv, as a user's
# `pip install .` does (maturin from PyPI as the build backend), with pytest for the suite.
# LITEVAULT_PY_PROFILE picks the cargo profile (default `dev`: CI reuses the test build's
# dependencies; a user's `pip install .` builds `release`). Fails loudly.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="target/py-venv"
PYTEST_VERSION="8.3.5"
if ! [ -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then
  rm -rf "$VENV"
  if ! python3 -m venv "$VENV" >/dev/null 2>&1 || ! "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then
    rm -rf "$VENV"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-venv
    python3 -m venv "$VENV"
  fi
fi
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-input "pytest==$PYTEST_VERSION"
started=$SECONDS
MATURIN_PEP517_ARGS="--profile ${LITEVAULT_PY_PROFILE:-dev} --locked" \
  "$VENV/bin/python" -m pip install --disable-pip-version-check --no-input --force-reinstall --no-deps .
echo "python-setup: pip install . took $((SECONDS - started)) s"
"$VENV/bin/python" -c "import litevault; print('python-setup: litevault', litevault.__version__, 'from', litevault.__file__)"
"$VENV/bin/litevault" --version
