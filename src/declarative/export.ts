/**
 * `l3iso export` and `l3iso status`: the live state in the file format
 * apply reads, and the engine's settings with its counts and map pressure.
 */
import { L3_OWNER_LOOPBACK } from '../codecs/layout';
import { mapFills, type MapFill } from '../observe/pressure';
import { netnsInode } from '../engine/lifecycle';
import { managedPrefixes, prefixText } from '../dataplane/prefixes';
import { EngineState } from '../dataplane/state';
import { liveUplinks, readLive } from './live';
import { STATE_VERSION, type DesiredUplink, type StateDocument } from './schema';

export interface ExportResult {
  document: StateDocument;
  /** cells that cannot be written to the file (their cgroup is gone) */
  skipped: string[];
}

export function exportState(pinDir: string): ExportResult {
  return withSharedRead(pinDir, (state) => {
    const live = readLive(state);
    const skipped = live.cells.filter((c) => c.cgroup.startsWith('#')).map((c) => c.cgroup);
    const document: StateDocument = {
      version: STATE_VERSION,
      engine: {
        cgroupRoot: live.engine.cgroupRoot,
        managedPrefixes: live.engine.managedPrefixes,
        uplinks: live.engine.uplinks,
      },
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

export function engineStatus(pinDir: string): EngineStatus {
  return withSharedRead(pinDir, (state) => {
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

/** Reads, like `list`, take no lock: the maps are the state and each read is of the kernel's. */
function withSharedRead<T>(pinDir: string, fn: (state: EngineState) => T): T {
  const state = EngineState.open(pinDir);
  try {
    return fn(state);
  } finally {
    state.close();
  }
}
