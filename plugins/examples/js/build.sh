#!/usr/bin/env bash
# Builds build/keep_errors.wasm from app.js with componentize-js (npm).
set -euo pipefail
cd "$(dirname "$0")"
[ -d node_modules/@bytecodealliance/componentize-js ] || npm install --no-audit --no-fund --silent
mkdir -p build/src
# componentize-js bundles one module: the SDK is copied beside the app.
cp ../../../sdk/js/weir.js build/src/weir.js
cp app.js build/src/app.js
npx componentize-js build/src/app.js --wit ../../../wit --world-name filter \
    --disable http --disable fetch-event -o build/keep_errors.wasm
