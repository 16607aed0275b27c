#!/usr/bin/env bash
# README command 1: set up, build and run the sandboxed demo.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec node dist/src/demo/main.js "$@"
