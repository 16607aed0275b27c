/** `l3iso doctor`: probe every kernel feature the engine uses. */
import type { Command } from 'commander';
import { engineModule, featuresModule, pathsModule } from '../../lazy';
import { withEngine, type GlobalOptions, type Runner } from '../context';
import { examples, jsonOption } from '../options';
import { printJson, table, warnCapabilities } from '../output';

function doctorReport(g: GlobalOptions) {
  const up = engineModule().Engine.isUp(g.pinDir);
  const live = up
    ? withEngine(g, (e) => ({
        warnings: e.capabilityWarnings(),
        preexistingSockets: e.preexistingSockets(),
        uplinks: e.uplinkWarnings(),
      }))
    : { warnings: [], preexistingSockets: [], uplinks: [] };
  return { ...featuresModule().doctor(pathsModule().pinLayout(g.pinDir).root), ...live };
}

export function registerDoctor(program: Command, run: Runner): void {
  program
    .command('doctor')
    .summary('probe every kernel feature the engine uses')
    .description(
      'Check each kernel feature l3iso uses, by loading and attaching the real programs\nto a throwaway cgroup, and say what a missing one disables. Exits 1 if a required one is missing.',
    )
    .addOption(jsonOption())
    .addHelpText('after', examples(['l3iso doctor', 'l3iso doctor --json']))
    .action(() =>
      run((g) => {
        const r = doctorReport(g);
        for (const u of r.uplinks)
          process.stderr.write(
            `l3iso: warning: uplink ifindex ${u.ifindex} (${u.mode}): ${u.warning}\n`,
          );
        for (const w of r.warnings) warnCapabilities(w.cell, w);
        for (const s of r.preexistingSockets) {
          process.stderr.write(
            `l3iso: warning: ${s.protocol} socket ${s.address}:${s.port} in cell ${s.cell} predates \`up\`: it is not confined: it keeps its address, can still bind and connect to any address and is treated as a host socket (restart its process)\n`,
          );
        }
        if (g.json) printJson(r);
        else
          process.stdout.write(
            table(
              ['FEATURE', 'STATUS', 'DETAIL'],
              r.features.map((f) => [
                f.name,
                f.ok ? 'ok' : f.required ? 'MISSING' : 'absent',
                f.ok ? f.detail : `${f.detail}; disables: ${f.disables ?? '-'}`,
              ]),
            ),
          );
        return r.ok ? 0 : 1;
      }),
    );
}
