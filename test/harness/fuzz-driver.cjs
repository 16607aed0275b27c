// Runs many CLI invocations in one node process (the CLI's own main(), as
// bin/l3iso runs it) and reports, for each, its exit status, what it wrote
// and whether the engine's maps changed. Used by test/integration/fuzz.test.ts
// inside the sandbox's network namespace: argv 2 is the pin dir, argv 3 a
// JSON file holding the list of argument vectors.
/* global __dirname, setImmediate */
'use strict';
const fs = require('node:fs');
const path = require('node:path');

const dist = path.resolve(__dirname, '..', '..', 'dist', 'src');
const { main } = require(path.join(dist, 'cli', 'main.js'));
const { EngineState } = require(path.join(dist, 'dataplane', 'state.js'));

const pinDir = process.argv[2];
const cases = JSON.parse(fs.readFileSync(process.argv[3], 'utf8'));

function snapshot() {
  const state = EngineState.open(pinDir);
  try {
    const hex = (m) => {
      const { keys, values } = state.map(m).lookupBatch();
      return keys.map((k, i) => k.toString('hex') + '=' + values[i].toString('hex')).sort();
    };
    return JSON.stringify([hex('l3_owners'), hex('l3_cells'), hex('l3_config')]);
  } finally {
    state.close();
  }
}

/** Listeners a run of main() could leave behind (each one left per run
 * grows into a MaxListenersExceededWarning in a long-lived process). */
function listeners() {
  return {
    stdoutError: process.stdout.listenerCount('error'),
    sigint: process.listenerCount('SIGINT'),
    sigterm: process.listenerCount('SIGTERM'),
    exit: process.listenerCount('exit'),
  };
}

async function runAll() {
  const warnings = [];
  process.on('warning', (w) => warnings.push(String(w)));
  // how many runs grew each listener count: once is a module that installs
  // its handler for the process's life, twice or more is a leak per run
  const grew = {};
  const realOut = process.stdout.write.bind(process.stdout);
  const realErr = process.stderr.write.bind(process.stderr);
  const results = [];
  for (const argv of cases) {
    const before = snapshot();
    const had = listeners();
    let stdout = '';
    let stderr = '';
    process.stdout.write = (chunk) => ((stdout += String(chunk)), true);
    process.stderr.write = (chunk) => ((stderr += String(chunk)), true);
    let status;
    let crash;
    try {
      status = await main(['node', 'l3iso', '--pin-dir', pinDir, ...argv]);
    } catch (err) {
      crash = String((err && err.stack) || err);
    } finally {
      process.stdout.write = realOut;
      process.stderr.write = realErr;
    }
    results.push({ argv, status, stdout, stderr, crash, changed: snapshot() !== before });
    const has = listeners();
    for (const k of Object.keys(has)) if (has[k] > had[k]) grew[k] = (grew[k] || 0) + 1;
  }
  // a warning is emitted on the next tick: let it come before reporting
  await new Promise((resolve) => setImmediate(resolve));
  realOut(JSON.stringify({ results, warnings, listenersGrew: grew }) + '\n');
}

process.on('uncaughtException', (err) => {
  process.stderr.write(`driver: uncaught ${err && err.stack}\n`);
  process.exit(99);
});
runAll();
