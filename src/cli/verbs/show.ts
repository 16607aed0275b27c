/** `l3iso show`: one cell, its addresses, processes, counters. */
import type { Command } from 'commander';
import type { CellDetail } from '../../cells/inventory';
import { TRAFFIC_GROUPS, type TrafficName } from '../../codecs/counters';
import { viaAgent, withEngine, type Runner } from '../context';
import { examples, jsonOption } from '../options';
import { printJson, warnCapabilities } from '../output';

function nonzero(r: Record<string, number>): string {
  return (
    Object.entries(r)
      .filter(([, n]) => n > 0)
      .map(([k, n]) => `${k}=${n}`)
      .join(' ') || '-'
  );
}

/** `show`'s traffic: one line per L3_TRAFFIC group ("  rx          3 pkts 252 B"). */
function trafficLines(t: Record<TrafficName, number>): string {
  return TRAFFIC_GROUPS.map(
    (g) =>
      `  ${g.group.padEnd(11)} ${g.fields.map((f) => `${t[f.name]} ${f.bytes ? 'B' : 'pkts'}`).join(' ')}\n`,
  ).join('');
}

function showText(c: CellDetail): string {
  return (
    `cell ${c.cell}  (cgroup ${c.path}, id ${c.id})\n` +
    `  addresses   ${c.addresses.join(' ') || '-'}\n` +
    `  primary     ${[c.primary4, c.primary6].filter(Boolean).join(' ') || '-'}\n` +
    `  loopback    127.0.0.1 -> ${c.loopback4} (private)\n` +
    `  raw sockets ${c.allowRaw ? 'allowed' : 'denied'}\n` +
    `  processes   ${c.processes.join(' ') || '-'}\n` +
    trafficLines(c.traffic) +
    `  refused     ${nonzero(c.refused)}\n` +
    `  dropped     ${nonzero(c.dropped)}\n`
  );
}

export function registerShow(program: Command, run: Runner): void {
  program
    .command('show')
    .summary('show one cell: addresses, processes, refusals')
    .argument('<cgroup>', 'cell cgroup')
    .addOption(jsonOption())
    .addHelpText('after', examples(['l3iso show web', 'l3iso show web --json']))
    .action((cgroup: string) =>
      run(
        async (g) => {
          const c =
            (await viaAgent<CellDetail>(g, 'GET', `/v1/cells/${encodeURIComponent(cgroup)}`)) ??
            withEngine(g, (e) => e.show(cgroup));
          if (g.json) return printJson(c);
          process.stdout.write(showText(c));
          for (const w of c.capabilityWarnings) warnCapabilities(c.cell, w);
        },
        { lazyEngine: true },
      ),
    );
}
