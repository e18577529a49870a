#!/usr/bin/env bash
# Builds python-hello.wasm with componentize-py against Nimbus's WIT world.
set -euo pipefail
cd "$(dirname "$0")"
out="${1:-python-hello.wasm}"
componentize-py -d ../../wit -w nimbus:worker/worker componentize app -o "$out"
