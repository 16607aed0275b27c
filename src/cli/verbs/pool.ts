/**
 * `l3iso pool add|list|del`: named CIDRs that cells take addresses from
 * (`assign CGROUP --from-pool NAME`). Through the agent when one answers
 * (in fleet mode the agent keeps the pools in etcd), else in this process.
 */
import type { Command } from 'commander';
import type { PoolAddRequest, PoolDelRequest, PoolsResponse } from '../../agent/api';
import type { PoolAddResult, PoolDelResult } from '../../pools/pools';
import { log } from '../../log';
import { viaAgent, withEngine, type Runner } from '../context';
import { examples, jsonOption, positiveInt } from '../options';
import { printJson, table } from '../output';

export function registerPool(program: Command, run: Runner): void {
  const lazy: Runner = (fn) => run(fn, { lazyEngine: true });
  const pool = program
    .command('pool')
    .summary('address pools: CIDRs that cells take addresses from')
    .description(
      'Define, list and delete address pools. `assign CGROUP --from-pool NAME [--count K]` ' +
        'then gives the cell the lowest free addresses of the pool (each claimed atomically in ' +
        'the kernel). Pools of one engine must not overlap. In fleet mode (`agent --etcd`) the ' +
        'pools are shared by every host and each host leases blocks of --block-size from them.',
    );
  registerAdd(pool, lazy);
  registerList(pool, lazy);
  registerDel(pool, lazy);
}

function registerAdd(pool: Command, lazy: Runner): void {
  pool
    .command('add')
    .summary('define a pool')
    .argument('<name>', 'pool name (letters, digits, _ . -)')
    .argument('<cidr>', 'IPv4 or IPv6 prefix, e.g. 10.1.0.0/16 or fd00:1::/64')
    .option(
      '--block-size <n>',
      'prefix length of the blocks a fleet host leases (default /26 for IPv4, /122 for IPv6, at most the pool)',
      positiveInt('--block-size'),
    )
    .addOption(jsonOption())
    .addHelpText(
      'after',
      examples([
        'l3iso pool add web 10.1.0.0/16',
        'l3iso pool add v6 fd00:1::/64 --block-size 120',
      ]),
    )
    .action((name: string, cidr: string, opts: { blockSize?: number }) =>
      lazy(async (g) => {
        const body: PoolAddRequest = {
          name,
          cidr,
          ...(opts.blockSize !== undefined ? { blockSize: opts.blockSize } : {}),
        };
        const r =
          (await viaAgent<PoolAddResult>(g, 'POST', '/v1/pools/add', body)) ??
          withEngine(g, (e) => e.poolAdd(name, cidr, opts.blockSize), { write: 'pool add' });
        if (g.json) return printJson(r);
        const p = r.pool;
        process.stdout.write(
          `pool ${p.name}: ${p.cidr}, blocks /${p.blockSize}${r.added ? '' : ' (already defined)'}\n`,
        );
      }),
    );
}

function registerList(pool: Command, lazy: Runner): void {
  pool
    .command('list')
    .alias('ls')
    .summary('list the pools and how many of their addresses are assigned')
    .addOption(jsonOption())
    .action(() =>
      lazy(async (g) => {
        const r = (await viaAgent<PoolsResponse>(g, 'GET', '/v1/pools')) ?? {
          pools: withEngine(g, (e) => e.poolList()),
        };
        if (g.json) return printJson(r);
        printPools(r);
      }),
    );
}

/** The pools as a table; in fleet mode with the blocks this host holds of each. */
function printPools(r: PoolsResponse): void {
  if (r.pools.length === 0) return void process.stdout.write('no pools\n');
  const rows = r.pools.map((p) => [
    p.name,
    p.cidr,
    `/${p.blockSize}`,
    String(p.assigned),
    p.size,
    ...(r.blocks ? [String(r.blocks.filter((b) => b.pool === p.name).length)] : []),
  ]);
  const head = ['POOL', 'CIDR', 'BLOCK', 'ASSIGNED', 'SIZE', ...(r.blocks ? ['BLOCKS HELD'] : [])];
  process.stdout.write(table(head, rows));
}

function registerDel(pool: Command, lazy: Runner): void {
  pool
    .command('del')
    .alias('delete')
    .summary('delete a pool (refused while its addresses are assigned)')
    .argument('<name>', 'pool name')
    .option('--force', 'delete although addresses of it are assigned: the cells keep them')
    .addOption(jsonOption())
    .action((name: string, opts: { force?: boolean }) =>
      lazy(async (g) => {
        const body: PoolDelRequest = { name, ...(opts.force ? { force: true } : {}) };
        const r =
          (await viaAgent<PoolDelResult>(g, 'POST', '/v1/pools/del', body)) ??
          withEngine(g, (e) => e.poolDel(name, { force: opts.force === true }), {
            write: 'pool del',
          });
        if (r.assigned > 0)
          log.warn(`pool ${name}: ${r.assigned} of its addresses stay assigned to their cells`);
        if (g.json) return printJson(r);
        process.stdout.write(`pool ${name} (${r.pool.cidr}) deleted\n`);
      }),
    );
}
