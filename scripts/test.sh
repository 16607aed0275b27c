#!/usr/bin/env bash
# README command 2: set up, lint, and run every test (unit and real-kernel
# integration). Ends with the totals as one line: "N passed, M failed".
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || exit 1

lint_failed=0
npx eslint . || lint_failed=1
npx prettier --check . >/dev/null || { npx prettier --check . ; lint_failed=1; }
# vitest strips types without checking them: tsc checks the tests and bench.
npx tsc -p tsconfig.test.json || lint_failed=1

results=$(mktemp /tmp/l3iso-vitest.XXXXXX.json)
npx vitest run --reporter=default --reporter=json --outputFile="$results" "$@"
vitest_status=$?
node scripts/totals.js "$results" "$lint_failed"
totals_status=$?
rm -f "$results"
[ "$vitest_status" -eq 0 ] && [ "$lint_failed" -eq 0 ] && [ "$totals_status" -eq 0 ]
