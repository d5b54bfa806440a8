#!/usr/bin/env bash
# Builds build/keep_errors.wasm from app.py with componentize-py (PyPI).
set -euo pipefail
cd "$(dirname "$0")"
command -v componentize-py >/dev/null || python3 -m pip install --quiet "componentize-py==0.25.1"
mkdir -p build
componentize-py -d ../../../wit -w filter componentize app -p . -p ../../../sdk/python -o build/keep_errors.wasm
