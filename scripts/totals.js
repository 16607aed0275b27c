// Prints vitest's totals as the one line CI reads: "N passed, M failed".
// Lint counts as one more check, so a lint failure is visible in the totals.
// Exits non-zero when nothing ran: an empty run must not look green.
'use strict';
const fs = require('node:fs');
const [file, lintFailed] = process.argv.slice(2);
let passed = 0;
let failed = 0;
let skipped = 0;
try {
  const report = JSON.parse(fs.readFileSync(file, 'utf8'));
  passed = report.numPassedTests;
  // A file that fails to load has no test results: count it as a failure,
  // or an unloadable file would vanish from the totals.
  const unloaded = report.testResults.filter(
    (f) => f.status === 'failed' && f.assertionResults.length === 0,
  ).length;
  failed = report.numFailedTests + unloaded;
  skipped = report.numPendingTests + report.numTodoTests;
} catch (err) {
  console.error(`totals: cannot read the test report (${err.message})`);
  failed += 1;
}
if (lintFailed === '1') failed += 1;
else passed += 1;
console.log(`${passed} passed, ${failed} failed` + (skipped ? `, ${skipped} skipped` : ''));
process.exit(failed > 0 || passed <= 1 ? 1 : 0);
