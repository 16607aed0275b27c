/**
 * Fleet mode (`agent --etcd URL --host-id ID`): the pools are the fleet's,
 * in etcd, and this host leases blocks of them under one etcd lease that it
 * keeps alive. Addresses come from the blocks held, locally, with no etcd
 * round trip (the kernel's owner map is still the arbiter on the host); a
 * block is requested when the held ones are full and given back when empty.
 *
 * No duplicate across hosts: a block is claimed with a compare-and-create
 * transaction, so exactly one host holds it, and a host allocates only from
 * blocks it holds *provably*: while etcd has confirmed its lease within the
 * TTL (counted from when the confirmed keepalive was sent, so the bound
 * errs early). Past that, another host may already have the blocks, and
 * allocation fails with EFLEET_UNAVAILABLE instead.
 */
import type { Etcd3, Lease } from 'etcd3';
import { L3isoError } from '../errors';
import type { AssignOptions, AssignResult } from '../cells/cells';
import { HeldEngine } from '../engine/held';
import { L3_OWNER_LOOPBACK } from '../codecs/layout';
import type { CellAddress } from '../model/address';
import {
  blockAt,
  blockCount,
  blockIndexOf,
  contains,
  fromInt,
  lowestFreeBlock,
  parsePoolCidr,
  rangeText,
  sizeOf,
  type Range,
} from '../pools/cidr';
import { clash, findPool } from '../pools/defs';
import type { PoolAddResult, PoolDelResult, PoolView } from '../pools/pools';
import { checkPoolName, type PoolDef } from '../pools/store';
import { setTimeout as sleep } from 'node:timers/promises';
import { connectEtcd, withDeadline, type EtcdOptions } from './etcd';

export { parseEndpoints } from './etcd';
import {
  BLOCKS,
  POOLS,
  blockKey,
  blockOfKey,
  blocksOf,
  checkHostId,
  hostKey,
  parseJson,
  poolKey,
  type BlockValue,
  type HostValue,
} from './keys';

export interface FleetLog {
  info(o: object, msg: string): void;
  warn(o: object, msg: string): void;
  error(o: object, msg: string): void;
}

export interface FleetOptions extends EtcdOptions {
  pinDir: string;
  hostId: string;
  ttlSeconds: number;
  /** give back empty blocks, refresh pools, reconnect: this often */
  resyncMs: number;
  log: FleetLog;
  /** the held blocks changed (announce them) */
  onBlocks?: (blocks: HeldBlock[]) => Promise<void> | void;
}

export interface HeldBlock {
  key: string;
  pool: string;
  range: Range;
  /** Date.now() when taken: a block is not given back in its first seconds */
  since: number;
}

export interface FleetPoolsResponse {
  pools: PoolView[];
  blocks: { pool: string; cidr: string; host: string; assigned: number }[];
  host: string;
  /** blocks this host's cells use that etcd says another host holds */
  conflicts: string[];
}

/** The held blocks are full: take another and try again. */
class BlocksFull extends L3isoError {}

const GRACE_MS = 2000;

export class FleetPools {
  private readonly client: Etcd3;
  private lease: Lease | undefined;
  private leaseId = '';
  /** Date.now() before which the lease provably lives on the server */
  private validUntil = 0;
  private fired: number[] = [];
  /** the held set is this lease's (re-read from etcd after a connect) */
  private ready = false;
  private held = new Map<string, HeldBlock>();
  private readonly pools = new Map<string, PoolDef>();
  private readonly giveBackPending = new Map<string, string>();
  private readonly queues = new Map<string, Promise<unknown>>();
  private conflicts: string[] = [];
  private timer: NodeJS.Timeout | undefined;
  private reconnecting: Promise<void> | undefined;
  private closed = false;
  private readonly engine: string;
  /** one Engine for the agent's life, not one per allocation */
  private readonly local: HeldEngine;

  private constructor(private readonly o: FleetOptions) {
    checkHostId(o.hostId);
    this.local = new HeldEngine(o.pinDir);
    this.engine = this.local.run((e) => e.state.config().instance ?? '');
    this.client = connectEtcd(o);
  }

  /**
   * Connects, registers the host and adopts its blocks. An unreachable etcd
   * does not stop the agent (existing cells need nothing from etcd): it
   * keeps trying. A host id another live engine holds does.
   */
  static async start(o: FleetOptions): Promise<FleetPools> {
    const f = new FleetPools(o);
    try {
      await f.connect();
    } catch (err) {
      if (err instanceof L3isoError && err.code === 'EFLEET_CONFLICT') {
        await f.close();
        throw err;
      }
      o.log.warn({ err: (err as Error).message }, 'fleet: etcd unreachable; retrying');
      f.reconnectLater();
    }
    f.timer = setInterval(() => void f.resync(), o.resyncMs);
    return f;
  }

  // ---- the lease ---------------------------------------------------------

  private async connect(): Promise<void> {
    const ttlMs = this.o.ttlSeconds * 1000;
    const lease = this.client.lease(this.o.ttlSeconds);
    lease.on('keepaliveFired', () => this.fired.push(Date.now()));
    lease.on('keepaliveSucceeded', () => {
      const sent = this.fired.shift();
      if (sent !== undefined && lease === this.lease)
        this.validUntil = Math.max(this.validUntil, sent + ttlMs);
    });
    lease.on('keepaliveFailed', () => (this.fired = []));
    lease.on('lost', (err) => this.onLost(lease, err));
    const asked = Date.now();
    try {
      this.leaseId = await withDeadline(this.o, 'grant the host lease', lease.grant());
    } catch (err) {
      lease.release();
      throw err;
    }
    this.lease = lease;
    this.validUntil = asked + ttlMs;
    await this.registerHost();
    await this.refreshPools();
    await this.adoptBlocks();
    this.ready = true;
    this.o.log.info(
      { host: this.o.hostId, lease: this.leaseId, blocks: this.held.size },
      'fleet: lease granted',
    );
  }

  private onLost(lease: Lease, err: Error): void {
    if (lease !== this.lease || this.closed) return;
    this.o.log.error({ err: err.message }, 'fleet: lease lost; re-claiming the blocks in use');
    this.lease = undefined;
    this.ready = false;
    this.held = new Map();
    void this.announce();
    this.reconnectLater();
  }

  private reconnectLater(): void {
    if (this.reconnecting || this.closed) return;
    this.reconnecting = (async () => {
      while (!this.closed && !this.ready) {
        await sleep(1000);
        if (this.closed) break;
        try {
          this.lease?.release();
          this.lease = undefined;
          await this.connect();
        } catch (err) {
          this.o.log.warn({ err: (err as Error).message }, 'fleet: reconnect failed');
        }
      }
      this.reconnecting = undefined;
    })();
  }

  /** The host key; an agent of the same engine (a restart) takes it over. */
  private async registerHost(): Promise<void> {
    const key = hostKey(this.o.hostId);
    const mine: HostValue = {
      host: this.o.hostId,
      engine: this.engine,
      pid: process.pid,
      since: new Date().toISOString(),
    };
    const text = JSON.stringify(mine);
    const c = this.client;
    const r = await this.call(
      'register the host',
      c.if(key, 'Create', '==', 0).then(c.put(key).value(text).lease(this.leaseId)).commit(),
    );
    if (r.succeeded) return;
    const old = await this.call('read the host key', c.get(key).string());
    const other = parseJson<HostValue>(old);
    if (old !== null && other?.engine !== this.engine)
      throw new L3isoError(
        'EFLEET_CONFLICT',
        `host id ${this.o.hostId} is held by another live agent (engine ${other?.engine ?? '?'}, pid ${other?.pid ?? '?'}, since ${other?.since ?? '?'})`,
        'give each host its own --host-id; a dead host frees its id after the lease TTL',
      );
    await this.call('take over the host key', c.put(key).value(text).lease(this.leaseId).exec());
  }

  private call<T>(what: string, p: Promise<T>): Promise<T> {
    return withDeadline(this.o, what, p);
  }

  /** Throws unless the held blocks are provably still this host's. */
  private requireLease(): void {
    if (this.ready && this.lease && Date.now() < this.validUntil) return;
    throw new L3isoError(
      'EFLEET_UNAVAILABLE',
      `etcd (${this.o.endpoints.join(',')}) has not confirmed host ${this.o.hostId}'s lease within its ${this.o.ttlSeconds} s TTL: its blocks cannot be used until it does`,
      'existing cells are unaffected; allocation resumes once etcd answers',
    );
  }

  // ---- blocks ------------------------------------------------------------

  /** Addresses cells own on this host (loopback aliases aside). */
  private localAddresses(): CellAddress[] {
    return this.local.run((e) =>
      e.state
        .owners()
        .filter((o) => !(o.owner.flags & L3_OWNER_LOOPBACK))
        .map((o) => o.address),
    );
  }

  private blockValue(pool: string, range: Range): string {
    const v: BlockValue = { pool, cidr: rangeText(range), host: this.o.hostId };
    return JSON.stringify(v);
  }

  /**
   * After a connect: the blocks etcd says are this host's move to the new
   * lease; blocks local cells use that nobody holds are claimed; a block
   * another host holds is a conflict, reported, never used.
   */
  private async adoptBlocks(): Promise<void> {
    const c = this.client;
    const all = await this.call('list the blocks', c.getAll().prefix(BLOCKS).strings());
    const held = new Map<string, HeldBlock>();
    const now = Date.now();
    for (const [key, text] of Object.entries(all)) {
      const b = blockOfKey(key);
      if (!b || parseJson<BlockValue>(text)?.host !== this.o.hostId) continue;
      const r = await this.call(
        'move a block to the new lease',
        c.if(key, 'Value', '==', text).then(c.put(key).value(text).lease(this.leaseId)).commit(),
      );
      if (r.succeeded) held.set(key, { key, pool: b.pool, range: b.range, since: now });
    }
    const conflicts: string[] = [];
    for (const b of this.blocksInUse()) {
      if (held.has(b.key)) continue;
      const text = this.blockValue(b.pool, b.range);
      const r = await this.call(
        'claim a block in use',
        c.if(b.key, 'Create', '==', 0).then(c.put(b.key).value(text).lease(this.leaseId)).commit(),
      );
      if (r.succeeded) held.set(b.key, { ...b, since: now });
      else conflicts.push(`${b.pool} ${rangeText(b.range)}`);
    }
    if (conflicts.length)
      this.o.log.error(
        { blocks: conflicts },
        'fleet: blocks this host uses are held by another host (its cells keep their addresses; no new ones come from these blocks)',
      );
    this.conflicts = conflicts;
    this.held = held;
    await this.announce();
  }

  /** The blocks of known pools that local cells have addresses in. */
  private blocksInUse(): Omit<HeldBlock, 'since'>[] {
    const out = new Map<string, Omit<HeldBlock, 'since'>>();
    const addrs = this.localAddresses();
    for (const def of this.pools.values()) {
      const pool = parsePoolCidr(def.cidr);
      for (const a of addrs) {
        const i = blockIndexOf(pool, def.blockSize, a);
        if (i === undefined) continue;
        const range = blockAt(pool, def.blockSize, i);
        const key = blockKey(def.name, rangeText(range));
        out.set(key, { key, pool: def.name, range });
      }
    }
    return [...out.values()];
  }

  /** One request per pool at a time takes a block (others wait for it). */
  private serialize<T>(pool: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.queues.get(pool) ?? Promise.resolve();
    const next = prev.then(fn, fn);
    this.queues.set(
      pool,
      next.catch(() => undefined),
    );
    return next;
  }

  private acquireBlock(def: PoolDef): Promise<void> {
    return this.serialize(def.name, async () => {
      this.requireLease();
      const c = this.client;
      const pool = parsePoolCidr(def.cidr);
      const taken = new Set<bigint>();
      const keys = await this.call(
        `list the blocks of pool ${def.name}`,
        c.getAll().prefix(blocksOf(def.name)).keys(),
      );
      for (const k of keys) {
        const b = blockOfKey(k);
        if (b) taken.add(blockIndexOf(pool, def.blockSize, fromInt(b.range.family, b.range.base))!);
      }
      for (let tries = 0; tries < 64; tries++) {
        const i = lowestFreeBlock(pool, def.blockSize, taken);
        if (i === undefined)
          throw new L3isoError(
            'EPOOL_EXHAUSTED',
            `pool ${def.name} (${def.cidr}) has no free block left: all ${blockCount(pool, def.blockSize)} blocks of /${def.blockSize} are held by hosts`,
          );
        const range = blockAt(pool, def.blockSize, i);
        const key = blockKey(def.name, rangeText(range));
        const r = await this.call(
          `take a block of pool ${def.name}`,
          c
            .if(key, 'Create', '==', 0)
            .then(c.put(key).value(this.blockValue(def.name, range)).lease(this.leaseId))
            .commit(),
        );
        if (r.succeeded) {
          this.held.set(key, { key, pool: def.name, range, since: Date.now() });
          this.o.log.info({ pool: def.name, block: rangeText(range) }, 'fleet: block taken');
          await this.announce();
          return;
        }
        taken.add(i);
      }
      throw new L3isoError('EFLEET_CONFLICT', `lost 64 races for a block of pool ${def.name}`);
    });
  }

  /** Gives back held blocks no local cell has an address in. */
  async giveBackEmpty(): Promise<void> {
    const c = this.client;
    if (this.held.size) {
      const addrs = this.localAddresses();
      const now = Date.now();
      const empty = [...this.held.values()].filter(
        (b) => now - b.since >= GRACE_MS && !addrs.some((a) => contains(b.range, a)),
      );
      // Out of the held set first: nothing allocates from them from here on.
      for (const b of empty) {
        this.held.delete(b.key);
        this.giveBackPending.set(b.key, this.blockValue(b.pool, b.range));
      }
      if (empty.length) await this.announce();
    }
    for (const [key, text] of [...this.giveBackPending]) {
      try {
        await this.call(
          'give a block back',
          c.if(key, 'Value', '==', text).then(c.delete().key(key)).commit(),
        );
        this.giveBackPending.delete(key);
        this.o.log.info({ block: key }, 'fleet: block given back');
      } catch (err) {
        this.o.log.warn(
          { block: key, err: (err as Error).message },
          'fleet: give-back failed; retrying',
        );
        return;
      }
    }
  }

  private async announce(): Promise<void> {
    try {
      await this.o.onBlocks?.(this.heldBlocks());
    } catch (err) {
      this.o.log.error({ err: (err as Error).message }, 'fleet: announcing the blocks failed');
    }
  }

  heldBlocks(): HeldBlock[] {
    return [...this.held.values()].sort((a, b) =>
      a.pool === b.pool ? (a.range.base < b.range.base ? -1 : 1) : a.pool < b.pool ? -1 : 1,
    );
  }

  private async resync(): Promise<void> {
    if (this.closed || !this.ready) return;
    try {
      await this.refreshPools();
      await this.giveBackEmpty();
    } catch (err) {
      this.o.log.warn({ err: (err as Error).message }, 'fleet: resync failed');
    }
  }

  // ---- pools -------------------------------------------------------------

  private async refreshPools(): Promise<PoolDef[]> {
    const all = await this.call('list the pools', this.client.getAll().prefix(POOLS).strings());
    const defs = Object.values(all)
      .map((t) => parseJson<PoolDef>(t))
      .filter((d): d is PoolDef => !!d && typeof d.name === 'string' && typeof d.cidr === 'string')
      .sort((a, b) => (a.name < b.name ? -1 : 1));
    this.pools.clear();
    for (const d of defs) this.pools.set(d.name, d);
    return defs;
  }

  private async poolDef(name: string): Promise<PoolDef> {
    checkPoolName(name);
    const known = this.pools.get(name);
    if (known) return known;
    return findPool(await this.refreshPools(), name);
  }

  async add(def: PoolDef): Promise<PoolAddResult> {
    const c = this.client;
    const pools = await this.refreshPools();
    const cl = clash(def, pools);
    if (cl === 'same') return { pool: def, added: false };
    if (cl) throw cl;
    const key = poolKey(def.name);
    const r = await this.call(
      'add the pool',
      c
        .if(key, 'Create', '==', 0)
        .then(c.put(key).value(JSON.stringify(def)))
        .commit(),
    );
    if (!r.succeeded) return this.add(def); // added meanwhile: same or a clash
    this.pools.set(def.name, def);
    return { pool: def, added: true };
  }

  async del(name: string, force: boolean): Promise<PoolDelResult> {
    const def = findPool(await this.refreshPools(), name);
    const c = this.client;
    const blocks = await this.call(
      'list the pool\u2019s blocks',
      c.getAll().prefix(blocksOf(name)).strings(),
    );
    const hosts = [...new Set(Object.values(blocks).map((t) => parseJson<BlockValue>(t)?.host))];
    const n = Object.keys(blocks).length;
    if (n > 0 && !force)
      throw new L3isoError(
        'EPOOL_IN_USE',
        `pool ${name} (${def.cidr}) still has ${n} block${n > 1 ? 's' : ''} held by host${hosts.length > 1 ? 's' : ''} ${hosts.join(', ')}`,
        'release their addresses first, or pass --force (the hosts keep them)',
      );
    await this.call('delete the pool', c.delete().key(poolKey(name)).exec());
    this.pools.delete(name);
    const mine = this.localAddresses().filter((a) => contains(parsePoolCidr(def.cidr), a));
    return { pool: def, assigned: mine.length };
  }

  async list(): Promise<FleetPoolsResponse> {
    let defs: PoolDef[];
    try {
      defs = await this.refreshPools();
    } catch {
      defs = [...this.pools.values()];
    }
    const addrs = this.localAddresses();
    const count = (r: Range) => addrs.filter((a) => contains(r, a)).length;
    return {
      pools: defs.map((d) => {
        const r = parsePoolCidr(d.cidr);
        return { ...d, family: r.family, size: sizeOf(r).toString(), assigned: count(r) };
      }),
      blocks: this.heldBlocks().map((b) => ({
        pool: b.pool,
        cidr: rangeText(b.range),
        host: this.o.hostId,
        assigned: count(b.range),
      })),
      host: this.o.hostId,
      conflicts: this.conflicts,
    };
  }

  /** The cell ends up with `count` of the pool's addresses, from the blocks
   * this host holds; a block is taken from etcd only when they are full. */
  async assign(
    cgroup: string,
    poolName: string,
    count: number,
    opts: AssignOptions,
  ): Promise<AssignResult & { pool: string }> {
    const def = await this.poolDef(poolName);
    const pool = parsePoolCidr(def.cidr);
    for (;;) {
      this.requireLease();
      const ranges = this.heldBlocks()
        .filter((b) => b.pool === def.name)
        .map((b) => b.range);
      const req = {
        ranges,
        count,
        within: (a: CellAddress) => contains(pool, a),
        exhausted: (missing: number) =>
          new BlocksFull('EPOOL_EXHAUSTED', `the blocks held of pool ${def.name} lack ${missing}`),
      };
      try {
        const r = this.local.run((e) => e.assignFromRanges(cgroup, req, opts));
        return { ...r, pool: def.name };
      } catch (err) {
        if (!(err instanceof BlocksFull)) throw err;
      }
      await this.acquireBlock(def);
    }
  }

  async released(): Promise<void> {
    if (this.ready) await this.giveBackEmpty();
  }

  /** Stops renewing without revoking: a restart within the TTL keeps the blocks. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    this.lease?.release();
    this.lease = undefined;
    this.client.close();
    await this.reconnecting;
    this.local.close();
  }
}
