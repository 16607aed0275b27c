/**
 * The verbs. Each one parses its arguments, calls the engine, and prints
 * either a table or (with --json) one JSON document. Grammar follows
 * iproute2: `l3iso [global options] VERB [options] ARGS`.
 */
import { Command, Option } from 'commander';
import { L3isoError } from '../errors';
import { TRAFFIC_GROUPS, type TrafficName } from '../codecs/counters';
import type { AssignRequest, CellsResponse, ReleaseRequest } from '../agent/api';
import type { AssignResult, ReleaseResult } from '../cells/cells';
import type { CellDetail, CellView } from '../cells/inventory';
import type { PolicyChange } from '../cells/policy';
import { UPLINK_MODES, type UplinkMode } from '../model/defaults';
import { log } from '../log';
import {
  agentClient,
  cellsModule,
  execModule,
  featuresModule,
  holdersModule,
  inventoryModule,
  lifecycleModule,
  ociHookModule,
  pathsModule,
  policyModule,
  preexistingModule,
  prepareEngine,
  stateModule,
  uplinkModule,
} from '../lazy';
import { registerAgentCommand } from './agent';
import { registerDeclarativeCommands } from './declarative';
import { registerObserveCommands } from './observe';
import { registerOciHookCommands } from './oci-hook';
import { examples, jsonOption, positiveInt, positiveSeconds } from './options';
import { ReportedError, printJson, table, warnCapabilities } from './output';

export interface GlobalOptions {
  pinDir: string;
  json: boolean;
  /** argv as given: exec needs to see where `--` was */
  argv: readonly string[];
  /** the agent's socket to try first; undefined with --no-agent */
  agentSocket: string | undefined;
}

/**
 * The agent's answer to this request, or undefined when no agent for this
 * pin dir answers (then the verb runs in this process, printing the same).
 * An error the agent reports is thrown as it came.
 */
async function viaAgent<T>(
  g: GlobalOptions,
  method: 'GET' | 'POST',
  url: string,
  body?: unknown,
): Promise<T | undefined> {
  const a = g.agentSocket
    ? await agentClient().callAgent(g.agentSocket, g.pinDir, method, url, body)
    : undefined;
  if (!a) {
    prepareEngine();
    return undefined;
  }
  if (!a.ok) throw new ReportedError(a.error);
  return a.body as T;
}

/**
 * Runs a verb's action with the global options, reporting its errors.
 * `lazyEngine`: the action loads the engine itself only when it needs it
 * (a verb the agent may answer); otherwise it is prepared before the action.
 */
export type Runner = (
  fn: (g: GlobalOptions) => Promise<number | void> | number | void,
  o?: { lazyEngine?: boolean },
) => Promise<void>;

/** `show`'s traffic: one line per L3_TRAFFIC group ("  rx          3 pkts 252 B"). */
function trafficLines(t: Record<TrafficName, number>): string {
  return TRAFFIC_GROUPS.map(
    (g) =>
      `  ${g.group.padEnd(11)} ${g.fields.map((f) => `${t[f.name]} ${f.bytes ? 'B' : 'pkts'}`).join(' ')}\n`,
  ).join('');
}

function cellRow(c: CellView): string[] {
  const policy = [c.allowRaw ? 'raw' : '', c.allowList ? 'allow-list' : '']
    .filter(Boolean)
    .join(',');
  return [c.cell, c.addresses.join(',') || '-', c.loopback4, policy || '-', c.id];
}

export function registerCommands(program: Command, run: Runner): void {
  registerEngineCommands(program, run);
  registerObserveCommands(program, run);
  registerDeclarativeCommands(program, run);
  registerOciHookCommands(program, run);
  registerAgentCommand(program, run);
}

function registerEngineCommands(program: Command, run: Runner): void {
  const lazy: Runner = (fn) => run(fn, { lazyEngine: true });
  program
    .command('up')
    .summary('load the programs and attach them at the cgroup root')
    .description(
      'Load the BPF programs, pin them and their maps under the pin dir, and attach them ' +
        'once at --cgroup-root, so every cgroup below it is covered. Idempotent: on a live ' +
        'engine it keeps every assignment and replaces the programs in place (atomically, ' +
        'through bpf_link_update). Refuses to start when a required kernel feature is missing.',
    )
    .requiredOption('--cgroup-root <path>', 'cgroup v2 directory whose subtree holds the cells')
    .option(
      '--managed-prefix <cidr...>',
      'prefixes whose addresses belong to cells: the uplink drops traffic to (and frames from) unowned ones',
    )
    .option(
      '--netns <path>',
      "network namespace for the sk_lookup demux (default: this process's)",
      '/proc/self/ns/net',
    )
    .option(
      '--max-cells <n>',
      'capacity of the cell maps (no memory is preallocated)',
      positiveInt('--max-cells'),
    )
    .option(
      '--repair',
      'on a live engine that lost pinned maps: re-create them, rebuilding the cell map from the owner map',
    )
    .addOption(jsonOption())
    .addHelpText(
      'after',
      examples([
        'l3iso up --cgroup-root /sys/fs/cgroup/unified/containers',
        'l3iso --pin-dir /sys/fs/bpf/l3iso-lab up --cgroup-root /sys/fs/cgroup/lab --max-cells 200000',
      ]),
    )
    .action(
      (opts: {
        cgroupRoot: string;
        maxCells?: number;
        netns: string;
        managedPrefix?: string[];
        repair?: boolean;
      }) =>
        run((g) => {
          const r = lifecycleModule().up({
            pinDir: g.pinDir,
            cgroupRoot: opts.cgroupRoot,
            netns: opts.netns,
            repair: opts.repair === true,
            ...(opts.managedPrefix ? { managedPrefixes: opts.managedPrefix } : {}),
            ...(opts.maxCells !== undefined ? { maxCells: opts.maxCells } : {}),
            onProgress: (step) => log.info({ pinDir: g.pinDir }, step),
          });
          for (const w of r.routes?.warnings ?? []) log.warn(w);
          if (g.json) return printJson(r);
          const verb = r.fresh ? 'up' : 'already up; programs replaced in place';
          if (r.repaired.length) log.warn({ maps: r.repaired }, 'repaired missing maps');
          process.stdout.write(
            `engine ${verb}: ${r.programs.length} programs at ${r.cgroupRoot}, state in ${r.pinDir}\n` +
              r.maps
                .map(
                  (m) => `  map ${m.name.padEnd(15)} ${m.action.padEnd(7)} max ${m.maxEntries}\n`,
                )
                .join(''),
          );
        }),
    );

  program
    .command('down')
    .summary('detach everything and forget every assignment of this instance')
    .description(
      'Detach the programs and remove the pinned links and maps of the instance\nselected by --pin-dir. Refuses while cells exist (they would be unconfined) unless\n--force. Removes only what l3iso created; anything else in the dir is left and named.',
    )
    .option('--force', 'go down although cells exist: they become ordinary, unconfined cgroups')
    .addOption(jsonOption())
    .addHelpText(
      'after',
      examples(['l3iso down', 'l3iso down --force', 'l3iso --pin-dir /sys/fs/bpf/l3iso-lab down']),
    )
    .action((opts: { force?: boolean }) =>
      run((g) => {
        const r = lifecycleModule().down(g.pinDir, { force: opts.force === true });
        for (const w of r.routes?.warnings ?? []) log.warn(w);
        if (g.json) return printJson(r);
        if (r.cells.length)
          log.warn({ cells: r.cells }, `${r.cells.length} cells are no longer confined`);
        process.stdout.write(
          `engine down: ${r.links} links detached, ${r.uplinks} uplinks detached, ${r.maps} maps removed from ${r.pinDir}` +
            (r.left.length ? `; left what l3iso did not create: ${r.left.join(', ')}` : '') +
            '\n',
        );
      }),
    );

  program
    .command('assign')
    .summary('give addresses to a cell')
    .description(
      'Make CGROUP a cell owning ADDR... (IPv4 and/or IPv6). The first address of each ' +
        'family a cell gets is its primary: wildcard binds land there. An address belongs to ' +
        'at most one cell; the claim is atomic in the kernel. Re-running is harmless. ' +
        'CGROUP is an absolute path or a path relative to the cgroup root.',
    )
    .argument('<cgroup>', 'cell cgroup (absolute or relative to the cgroup root)')
    .argument('<addr...>', 'IPv4 or IPv6 addresses')
    .option(
      '--force',
      'make the cgroup a cell although its processes already hold sockets (they keep what they are bound to; see doctor)',
    )
    .addOption(jsonOption())
    .addHelpText(
      'after',
      examples([
        'l3iso assign web 192.0.2.10 2001:db8::10',
        'l3iso assign /sys/fs/cgroup/unified/containers/db 192.0.2.11',
      ]),
    )
    .action((cgroup: string, addrs: string[], opts: { force?: boolean }) =>
      lazy(async (g) => {
        const r =
          (await viaAgent<AssignResult>(g, 'POST', '/v1/assign', {
            cgroup,
            addresses: addrs,
            ...(opts.force ? { force: true } : {}),
            checkLocal: true,
          } satisfies AssignRequest)) ??
          cellsModule().assign(g.pinDir, cgroup, addrs, {
            force: opts.force === true,
            checkLocal: true,
          });
        if (r.sockets.length)
          log.warn(`${r.cell} already had sockets: ${holdersModule().describeSockets(r.sockets)}`);
        const notLocal = r.notLocal ?? [];
        if (notLocal.length)
          log.warn(
            `${r.cell}: ${notLocal.join(', ')} ${notLocal.length > 1 ? 'are' : 'is'} neither local in the engine's network namespace nor in a managed prefix: binds to ${notLocal.length > 1 ? 'them' : 'it'} fail with EADDRNOTAVAIL until ${notLocal.length > 1 ? 'they are' : 'it is'} added to an interface, or the engine is brought up with --managed-prefix covering ${notLocal.length > 1 ? 'them' : 'it'}`,
          );
        if (g.json) return printJson(r);
        const added = r.added.length ? `assigned ${r.added.join(', ')}` : 'nothing new';
        const same = r.unchanged.length ? ` (already had ${r.unchanged.join(', ')})` : '';
        process.stdout.write(`${r.cell}: ${added}${same}; loopback 127.0.0.1 -> ${r.loopback4}\n`);
      }),
    );

  program
    .command('release')
    .summary('take addresses (or the whole cell) back')
    .description(
      'Release ADDR... from the cell, or with no ADDR the whole cell: its cgroup becomes an ' +
        'ordinary, unconfined cgroup. New binds to a released address fail at once. Refuses ' +
        'while sockets are bound to the addresses, naming their processes, unless --force ' +
        '(TCP connections are reset and UDP sockets get ECONNABORTED; TCP listeners are left ' +
        'open but unreachable, so servers do not spin, until their process closes them) or ' +
        '--drain SECONDS (new connections are refused at once, established ones may finish; ' +
        'what is left at the deadline is reset).',
    )
    .argument('<cgroup>', 'cell cgroup')
    .argument('[addr...]', 'addresses to release (default: all, and the cell itself)')
    .option('--force', 'release although sockets use the addresses')
    .option(
      '--drain <seconds>',
      'refuse new connections now, reset what is left after SECONDS',
      positiveSeconds('--drain'),
    )
    .addOption(jsonOption())
    .addHelpText(
      'after',
      examples([
        'l3iso release web 2001:db8::10',
        'l3iso release web',
        'l3iso release web 192.0.2.10 --drain 30',
      ]),
    )
    .action((cgroup: string, addrs: string[], opts: { force?: boolean; drain?: number }) =>
      lazy(async (g) => {
        if (opts.force && opts.drain !== undefined)
          throw new L3isoError('EUSAGE', '--force and --drain exclude each other');
        const o = {
          force: opts.force === true,
          ...(opts.drain !== undefined ? { drainSeconds: opts.drain } : {}),
        };
        const r =
          (await viaAgent<ReleaseResult>(g, 'POST', '/v1/release', {
            cgroup,
            ...(addrs.length ? { addresses: addrs } : {}),
            ...(o.force ? { force: true } : {}),
            ...(opts.drain !== undefined ? { drainSeconds: opts.drain } : {}),
          } satisfies ReleaseRequest)) ?? cellsModule().release(g.pinDir, cgroup, addrs, o);
        if (r.sockets.length)
          log.warn(
            `${r.cell}: took the addresses from live sockets (${holdersModule().describeSockets(r.sockets)}); listeners stay open but unreachable until their process closes them`,
          );
        if (g.json) return printJson(r);
        const what = r.released.length ? r.released.join(', ') : 'no addresses';
        process.stdout.write(
          `${r.cell}: released ${what}${r.removed ? '; cell removed' : ''}${r.socketsDestroyed ? `; ${r.socketsDestroyed} sockets destroyed` : ''}\n`,
        );
      }),
    );

  program
    .command('list')
    .alias('ls')
    .summary('list the cells and their addresses')
    .addOption(jsonOption())
    .addHelpText('after', examples(['l3iso list', 'l3iso list --json | jq ".cells[].addresses"']))
    .action(() =>
      lazy(async (g) => {
        const r =
          (await viaAgent<CellsResponse>(g, 'GET', '/v1/cells')) ??
          inventoryModule().listCells(g.pinDir);
        if (g.json) return printJson(r);
        if (r.cells.length === 0) {
          process.stdout.write(`no cells below ${r.root}\n`);
          return;
        }
        process.stdout.write(
          table(['CELL', 'ADDRESSES', 'LOOPBACK', 'POLICY', 'CGROUP-ID'], r.cells.map(cellRow)),
        );
      }),
    );

  program
    .command('show')
    .summary('show one cell: addresses, processes, refusals')
    .argument('<cgroup>', 'cell cgroup')
    .addOption(jsonOption())
    .addHelpText('after', examples(['l3iso show web', 'l3iso show web --json']))
    .action((cgroup: string) =>
      lazy(async (g) => {
        const c =
          (await viaAgent<CellDetail>(g, 'GET', `/v1/cells/${encodeURIComponent(cgroup)}`)) ??
          inventoryModule().showCell(g.pinDir, cgroup);
        if (g.json) return printJson(c);
        const nonzero = (r: Record<string, number>) =>
          Object.entries(r)
            .filter(([, n]) => n > 0)
            .map(([k, n]) => `${k}=${n}`)
            .join(' ') || '-';
        process.stdout.write(
          `cell ${c.cell}  (cgroup ${c.path}, id ${c.id})\n` +
            `  addresses   ${c.addresses.join(' ') || '-'}\n` +
            `  primary     ${[c.primary4, c.primary6].filter(Boolean).join(' ') || '-'}\n` +
            `  loopback    127.0.0.1 -> ${c.loopback4} (private)\n` +
            `  raw sockets ${c.allowRaw ? 'allowed' : 'denied'}\n` +
            `  processes   ${c.processes.join(' ') || '-'}\n` +
            trafficLines(c.traffic) +
            `  refused     ${nonzero(c.refused)}\n` +
            `  dropped     ${nonzero(c.dropped)}\n`,
        );
        for (const w of c.capabilityWarnings) warnCapabilities(c.cell, w);
      }),
    );

  program
    .command('exec')
    .summary('run a command in a new cell (like `ip afnetns exec`)')
    .description(
      'Create a cell cgroup under the root, assign ADDR... to it, and run CMD inside it, ' +
        "confined as the threat model asks of a runtime: docker's default capabilities " +
        'without CAP_NET_RAW in every capability set, no_new_privs, every mount nosuid, no ' +
        'bpffs, read-only cgroup, sysfs and /proc/sys mounts, a cgroup namespace rooted ' +
        'at the cell, and a PID namespace of its own with tini as pid 1. --user drops root ' +
        "entirely. Exits with CMD's status (125 when the confinement itself fails: CMD is " +
        'then not run). Whatever CMD leaves running ends with it. Afterwards the cell is ' +
        'released and its cgroup removed, unless --keep.',
    )
    .option('--name <name>', 'cell cgroup name under the root (default exec-PID)')
    .option('--keep', 'keep the cell (cgroup and addresses) after the command exits', false)
    .option(
      '--user <user[:group]>',
      "run CMD as this user (name or uid) and group (default: the user's primary group)",
    )
    .argument('<addr...>', 'addresses, then -- and the command')
    .addHelpText(
      'after',
      examples([
        'l3iso exec 192.0.2.10 -- python3 -m http.server 8080',
        'l3iso exec --name api --keep 192.0.2.11 2001:db8::11 -- ./server',
        'l3iso exec --user www-data 192.0.2.12 -- nginx -g "daemon off;"',
      ]),
    )
    .action((_args: string[], o: { name?: string; keep: boolean; user?: string }, cmd: Command) =>
      run(async (g) => {
        const raw = g.argv;
        const dash = raw.indexOf('--');
        if (dash < 0 || dash === raw.length - 1) {
          throw new L3isoError(
            'EUSAGE',
            'exec needs the command after --, as in: l3iso exec ADDR -- CMD [ARGS]',
          );
        }
        const argv = raw.slice(dash + 1);
        const addresses = cmd.args.slice(0, cmd.args.length - argv.length);
        return execModule().execInCell({
          pinDir: g.pinDir,
          keep: o.keep,
          addresses,
          argv,
          ...(o.name !== undefined ? { name: o.name } : {}),
          ...(o.user !== undefined ? { user: o.user } : {}),
          onAssigned: (r) =>
            log.info({ cell: r.cell, addresses: [...r.added, ...r.unchanged] }, 'cell ready'),
        });
      }),
    );

  program
    .command('policy')
    .summary("change a cell's policy")
    .description(
      'Raw sockets (SOCK_RAW) are denied in a cell by default: socket() fails with EPERM. ' +
        '--allow-raw lets the cell open them; its packets still cannot leave with a source ' +
        'address the cell does not own (egress anti-spoof).',
    )
    .argument('<cgroup>', 'cell cgroup')
    .option('--allow-raw', 'let the cell open raw IP sockets')
    .option('--deny-raw', 'refuse raw IP sockets (the default)')
    .option('--allow-from <cidr...>', 'at the uplink, admit only these source prefixes (v4 and v6)')
    .option('--clear', 'drop the allow-list: admit every source again')
    .addOption(jsonOption())
    .addHelpText(
      'after',
      examples([
        'l3iso policy web --allow-raw',
        'l3iso policy web --allow-from 198.51.100.0/24 2001:db8:100::/48',
        'l3iso policy web --clear',
      ]),
    )
    .action(
      (
        cgroup: string,
        opts: { allowRaw?: boolean; denyRaw?: boolean; allowFrom?: string[]; clear?: boolean },
      ) =>
        run((g) => {
          if (opts.allowRaw && opts.denyRaw)
            throw new L3isoError('EUSAGE', '--allow-raw and --deny-raw exclude each other');
          const change: PolicyChange = {
            ...(opts.allowRaw ? { allowRaw: true } : opts.denyRaw ? { allowRaw: false } : {}),
            ...(opts.allowFrom ? { allowFrom: opts.allowFrom } : {}),
            ...(opts.clear ? { clearAllowList: true } : {}),
          };
          if (Object.keys(change).length === 0)
            throw new L3isoError(
              'EUSAGE',
              'policy needs --allow-raw, --deny-raw, --allow-from or --clear',
            );
          const r = policyModule().setPolicy(g.pinDir, cgroup, change);
          if (g.json) return printJson(r);
          process.stdout.write(
            `${r.cell}: raw sockets ${r.allowRaw ? 'allowed' : 'denied'}; ` +
              `uplink sources ${r.allowFrom ? r.allowFrom.join(' ') : 'all'}\n`,
          );
        }),
    );

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
        const r = uplinkModule().attachUplink(g.pinDir, iface, opts.mode);
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

  program
    .command('detach')
    .summary('take the uplink programs off an interface')
    .argument('<iface>', 'network interface')
    .addOption(jsonOption())
    .addHelpText('after', examples(['l3iso detach eth0']))
    .action((iface: string) =>
      run((g) => {
        const r = uplinkModule().detachUplink(g.pinDir, iface);
        if (g.json) return printJson(r);
        process.stdout.write(`detached from ${r.iface}\n`);
      }),
    );

  program
    .command('gc')
    .summary('release cells whose cgroup is gone, and claims of crashed assigns')
    .description(
      'A cgroup removed without `release` leaves its cell in the maps (its addresses stay ' +
        'owned). gc releases such cells, destroys their sockets, and frees addresses claimed ' +
        'by an assign that died before it finished. It also finishes releases that were ' +
        'interrupted and recomputes every derived field of every cell from the owner map. ' +
        'It refuses (releasing nothing) when the cgroup root cannot be resolved. --check only ' +
        'reports what is inconsistent. Last, it removes the OCI hook records ' +
        '(/run/l3iso/oci) of containers whose cell is gone.',
    )
    .option('--check', 'report inconsistencies, change nothing (exit 1 if there are any)')
    .addOption(jsonOption())
    .addHelpText('after', examples(['l3iso gc', 'l3iso gc --json', 'l3iso gc --check']))
    .action((opts: { check?: boolean }) =>
      run((g) => {
        if (opts.check) {
          const problems = cellsModule().checkState(g.pinDir);
          if (g.json) printJson({ inconsistencies: problems });
          else
            process.stdout.write(
              problems.length ? problems.map((p) => `${p}\n`).join('') : 'gc: state consistent\n',
            );
          return problems.length ? 1 : 0;
        }
        const r = {
          ...cellsModule().gc(g.pinDir),
          ociRecords: ociHookModule().gcOciRecords(g.pinDir),
        };
        if (g.json) return printJson(r);
        process.stdout.write(
          `gc: ${r.cells.length} stale cells released` +
            (r.cells.length
              ? ` (${r.cells.map((c) => `#${c.id}: ${c.addresses.join(',') || '-'}`).join('; ')})`
              : '') +
            `, ${r.orphanedAddresses.length} orphaned addresses freed` +
            `, ${r.repaired.length} cells repaired, ${r.staleCounters.length} stale counters removed` +
            `, ${r.ociRecords.length} stale container records removed\n`,
        );
      }),
    );

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
        const up = stateModule().EngineState.isUp(g.pinDir);
        const r = {
          ...featuresModule().doctor(pathsModule().pinLayout(g.pinDir).root),
          warnings: up ? inventoryModule().allCapabilityWarnings(g.pinDir) : [],
          preexistingSockets: up ? preexistingModule().preexistingSockets(g.pinDir) : [],
          uplinks: up ? uplinkModule().uplinkWarnings(g.pinDir) : [],
        };
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
