/**
 * `l3iso export` and `l3iso status`: the live state in the file format
 * apply reads, and the engine's settings with its counts and map pressure.
 */
import { L3_OWNER_LOOPBACK } from '../codecs/layout';
import { mapFills, type MapFill } from '../observe/pressure';
import { netnsInode } from '../dataplane/netns';
import { managedPrefixes, prefixText } from '../dataplane/prefixes';
import { EngineState } from '../dataplane/state';
import { liveUplinks, readLive } from './live';
import { readPools } from '../pools/store';
import { STATE_VERSION, type DesiredUplink, type StateDocument } from './schema';

export interface ExportResult {
  document: StateDocument;
  /** cells that cannot be written to the file (their cgroup is gone) */
  skipped: string[];
}

export function exportState(engine: EngineState): ExportResult {
  return withSharedRead(engine, (state) => {
    const live = readLive(state);
    const skipped = live.cells.filter((c) => c.cgroup.startsWith('#')).map((c) => c.cgroup);
    // The pools, so that apply on a fresh engine defines them again; cells
    // are exported with their addresses (what they hold, not how they got
    // them), so the round trip restores exactly the same assignment.
    const pools = readPools(state.layout, state.config().instance ?? '');
    const document: StateDocument = {
      version: STATE_VERSION,
      engine: {
        cgroupRoot: live.engine.cgroupRoot,
        managedPrefixes: live.engine.managedPrefixes,
        uplinks: live.engine.uplinks,
      },
      ...(pools.length ? { pools } : {}),
      cells: live.cells
        .filter((c) => !c.cgroup.startsWith('#'))
        .map((c) => ({
          cgroup: c.cgroup,
          addresses: c.addresses,
          allowRaw: c.allowRaw,
          ...(c.allowFrom ? { allowFrom: c.allowFrom } : {}),
        })),
    };
    return { document, skipped };
  });
}

export interface EngineStatus {
  pinDir: string;
  cgroupRoot: string;
  rootCgroupId: string;
  instance?: string;
  /** inode of the network namespace sk_lookup is attached to */
  netnsInode: string;
  /** whether this process runs in that namespace */
  inEngineNetns: boolean;
  maxCells?: number;
  managedPrefixes: string[];
  uplinks: DesiredUplink[];
  counts: { cells: number; addresses: number; addresses4: number; addresses6: number };
  /** entries ÷ max_entries of the bounded maps (as l3iso_map_pressure) */
  maps: (MapFill & { pressure: number })[];
}

export function engineStatus(engine: EngineState): EngineStatus {
  return withSharedRead(engine, (state) => {
    const config = state.config();
    const owners = state.owners();
    const addrs = owners.filter((e) => !(e.owner.flags & L3_OWNER_LOOPBACK));
    const fills = mapFills(state, { l3_owners: owners.length });
    let here: bigint | undefined;
    try {
      here = netnsInode('/proc/self/ns/net');
    } catch {
      here = undefined;
    }
    return {
      pinDir: state.layout.root,
      cgroupRoot: config.cgroupRoot,
      rootCgroupId: config.rootCgroup.toString(),
      ...(config.instance ? { instance: config.instance } : {}),
      netnsInode: String(config.netnsIno ?? 0n),
      inEngineNetns: here !== undefined && here === config.netnsIno,
      ...(config.maxCells ? { maxCells: config.maxCells } : {}),
      managedPrefixes: managedPrefixes(state).map(prefixText).sort(),
      uplinks: liveUplinks(state),
      counts: {
        cells: fills.find((f) => f.map === 'l3_cells')?.entries ?? 0,
        addresses: addrs.length,
        addresses4: addrs.filter((e) => e.address.family === 4).length,
        addresses6: addrs.filter((e) => e.address.family === 6).length,
      },
      maps: fills.map((f) => ({ ...f, pressure: f.maxEntries > 0 ? f.entries / f.maxEntries : 0 })),
    };
  });
}

/** A consistent read: the shared lock keeps writers out while it reads. */
function withSharedRead<T>(state: EngineState, fn: (state: EngineState) => T): T {
  return state.lock.shared(() => fn(state));
}
