#!/usr/bin/env bash
# Installs everything the tests need, then runs the whole suite. `.ci/run` calls exactly this.
# Extra arguments go to pytest (e.g. `bash scripts/test.sh -k transport`).
set -euo pipefail
cd "$(dirname "$0")/.."

# System tools the tests drive: curl and wrk are real HTTP clients in the transport tests;
# clang-14 with libFuzzer fuzzes the native parsers under AddressSanitizer; buildah (daemonless)
# and debootstrap build and run the sklearn-cpu image (tests/images/).
# Only what is missing: a machine whose Node.js came with its own npm (NodeSource's nodejs)
# cannot install Debian's npm beside it.
MISSING=()
for tool in wrk curl clang++-14:"clang-14 libclang-rt-14-dev" buildah debootstrap npm; do
  command -v "${tool%%:*}" >/dev/null || { packages="${tool#*:}"; MISSING+=($packages); }
done
if [ ${#MISSING[@]} -gt 0 ]; then
  SUDO=""; if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${MISSING[@]}" >/dev/null
fi
# Images built by the tests, their base and wheelhouses stay inside this checkout (build/images/),
# never in the machine's image store, so one run never reuses another's.
export HYPERSERVE_BUILDAH_ROOT="${HYPERSERVE_BUILDAH_ROOT:-$PWD/build/images/storage}"

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
# The CPU build of PyTorch first: a looser requirement would pull a multi-GB CUDA build.
.venv/bin/python -m pip install -q torch==2.13.0
# Builds the C++ extension (scikit-build-core + nanobind) and installs every CPU framework.
.venv/bin/python -m pip install -q -e '.[all-cpu,test]'

# Microsoft's Azure ML inference server and MLflow's scoring server, each in its own venv:
# tests/e2e/test_azureml.py and tests/e2e/test_mlflow.py compare hyperserve with them.
PYTHON="$PYTHON" bash bench/peers/install.sh azureml mlflow

# Azurite, Azure Blob's emulator, from npm, kept in this checkout (tests/e2e/test_storage.py).
if [ ! -x build/azurite/node_modules/.bin/azurite-blob ]; then
  npm install --silent --no-audit --no-fund --prefix build/azurite azurite@3.35.0 >/dev/null
fi

.venv/bin/python -m pytest "$@"
# The codecs again with the pure-Python twins, which must behave identically, and the transport
# with httptools alone (no native whole-request parser).
HYPERSERVE_NO_NATIVE=1 .venv/bin/python -m pytest -q tests/unit tests/adversarial/test_fuzz_parsers.py -k "codec or b64 or http or fuzz_"
