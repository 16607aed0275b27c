/** `l3iso attach` and `detach`: the uplink programs on an interface. */
import { Option, type Command } from 'commander';
import { UPLINK_MODES, type UplinkMode } from '../../model/defaults';
import { log } from '../../log';
import { withEngine, type Runner } from '../context';
import { examples, jsonOption } from '../options';
import { printJson } from '../output';

export function registerAttach(program: Command, run: Runner): void {
  program
    .command('attach')
    .summary('put the uplink programs (an ingress filter, tc egress) on an interface')
    .description(
      'Attach a filter on the ingress of IFACE (per-cell rx counters, allow-lists, drop of ' +
        'traffic to unassigned managed addresses) and a tc filter on its egress (per-cell ' +
        'tx counters, anti-spoof at the wire). The ingress filter keeps the offloads: tc ' +
        'ingress on veth and other virtual devices, native XDP on a NIC whose driver ' +
        'supports it, tc ingress on one that does not; attach says which and why. ' +
        'Stays attached after the CLI exits.',
    )
    .argument('<iface>', 'network interface in this network namespace')
    .addOption(
      new Option('--mode <mode>', 'ingress filter: native XDP, generic XDP or tc ingress').choices(
        UPLINK_MODES,
      ),
    )
    .addOption(jsonOption())
    .addHelpText('after', examples(['l3iso attach eth0', 'l3iso attach eth1 --mode tc']))
    .action((iface: string, opts: { mode?: UplinkMode }) =>
      run((g) => {
        const r = withEngine(g, (e) => e.attach(iface, opts.mode), { write: 'attach' });
        if (r.warning) log.warn(r.warning);
        if (r.offloadCost) log.warn(`${r.iface}: ${r.offloadCost}`);
        if (g.json) return printJson(r);
        const ingress =
          r.mode === 'tc'
            ? `tc ingress (prog ${r.tcIngressProgId})`
            : `XDP ${r.mode} (prog ${r.xdpProgId})`;
        process.stdout.write(
          `attached to ${r.iface}: ${ingress}, tc egress (prog ${r.tcProgId}): ${r.reason}\n`,
        );
      }),
    );
}

export function registerDetach(program: Command, run: Runner): void {
  program
    .command('detach')
    .summary('take the uplink programs off an interface')
    .argument('<iface>', 'network interface')
    .addOption(jsonOption())
    .addHelpText('after', examples(['l3iso detach eth0']))
    .action((iface: string) =>
      run((g) => {
        const r = withEngine(g, (e) => e.detach(iface), { write: 'detach' });
        if (g.json) return printJson(r);
        process.stdout.write(`detached from ${r.iface}\n`);
      }),
    );
}
