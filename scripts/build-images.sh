#!/usr/bin/env bash
# Builds hyperserve's prebuilt images from this checkout: scripts/build-images.sh [NAME...|all|cpu|gpu]
# (--help lists the options). Needs Python 3.11 with pip, and Docker or buildah (+ debootstrap
# where no image registry answers); scripts/test.sh installs those.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] && PYTHON=.venv/bin/python
exec "$PYTHON" scripts/build_images.py "$@"
