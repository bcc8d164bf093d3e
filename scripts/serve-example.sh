#!/usr/bin/env bash
# Sets up hyperserve in .venv, trains the bundled iris example and serves it on port 8080.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
# The example is a scikit-learn model, served over REST and gRPC (batch: hyperserve batch's progress bar); '.[all-cpu]' adds every other CPU framework.
.venv/bin/python -m pip install -q -e '.[sklearn,grpc,batch]'
[ -f examples/iris/model.joblib ] || .venv/bin/python examples/iris/make_model.py
exec .venv/bin/hyperserve serve examples/iris "$@"
