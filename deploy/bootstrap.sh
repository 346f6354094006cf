#!/usr/bin/env bash
# Set up a fresh machine for riskgraph: a virtualenv in .venv with every pinned
# dependency (constraints.txt) and riskgraph itself installed in editable mode.
# Idempotent: a second run only checks that everything is installed.
# Usage: bash deploy/bootstrap.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "bootstrap: creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
echo "bootstrap: installing pinned dependencies (constraints.txt); first run downloads torch (large)"
# setuptools warns that riskgraph/ in the working directory may shadow the editable
# install; here that folder is the package itself, so the warning says nothing
PYTHONWARNINGS="ignore:Editable installation" \
  .venv/bin/python -m pip install -q -c constraints.txt -e ".[test]"
echo "bootstrap: ready (.venv/bin/riskgraph)"
