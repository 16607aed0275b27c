/** `l3iso status`: the engine's settings, counts and map pressure. */
import type { Command } from 'commander';
import type { EngineStatus } from '../../declarative/export';
import { asRoot, withEngine, type Runner } from '../context';
import { printJson } from '../output';
import { examples, jsonOption } from '../options';

export function registerStatus(program: Command, run: Runner): void {
  program
    .command('status')
    .summary("show the engine's settings, counts and map pressure")
    .addOption(jsonOption())
    .addHelpText('after', examples(['l3iso status', 'l3iso status --json']))
    .action(() =>
      run((g) => {
        asRoot('status');
        const r = withEngine(g, (e) => e.status());
        if (g.json) return printJson(r);
        process.stdout.write(statusText(r));
      }),
    );
}

function statusText(r: EngineStatus): string {
  const uplinks = r.uplinks.map((u) => `${u.iface} (${u.mode})`).join(', ') || '-';
  const lines = [
    `engine in ${r.pinDir}`,
    `  cgroup root     ${r.cgroupRoot} (cgroup id ${r.rootCgroupId})`,
    `  netns           inode ${r.netnsInode}${r.inEngineNetns ? ' (this one)' : " (not this process's)"}`,
    `  max cells       ${r.maxCells ?? '-'}`,
    `  managed         ${r.managedPrefixes.join(', ') || '-'}`,
    `  uplinks         ${uplinks}`,
    `  cells           ${r.counts.cells}`,
    `  addresses       ${r.counts.addresses} (IPv4 ${r.counts.addresses4}, IPv6 ${r.counts.addresses6})`,
    '  map pressure',
    ...r.maps.map(
      (m) =>
        `    ${m.map.padEnd(15)} ${String(m.entries).padStart(8)} / ${String(m.maxEntries).padEnd(8)} ${(m.pressure * 100).toFixed(1)} %`,
    ),
  ];
  return lines.join('\n') + '\n';
}
