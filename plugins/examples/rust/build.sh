#!/usr/bin/env bash
# Builds build/keep_errors.wasm from src/lib.rs with cargo.
set -euo pipefail
cd "$(dirname "$0")"
cargo build --profile plugin --target wasm32-wasip2 -p keep-errors
mkdir -p build
cp "${CARGO_TARGET_DIR:-../../../target}/wasm32-wasip2/plugin/keep_errors.wasm" build/
