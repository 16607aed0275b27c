/**
 * Sockets that predate `up` are not retrofitted: they never passed
 * cgroup/sock_create, so the hooks treat them as host sockets. This finds
 * the ones whose cgroup lies inside a cell, for `doctor`. Socket iterators
 * walk the caller's network namespace: run it where the engine runs.
 */
import * as path from 'node:path';
import { runIterator } from '../../loader';
import { formatAddress } from '../model/address';
import { cgroupPathsById, relativeCellName } from '../model/cgroup';
import { loadWithPinnedMaps } from './objects';
import { AUDIT_OBJECT } from './programs';
import { EngineState } from './state';

export interface PreexistingSocket {
  cell: string;
  /** cgroup the socket was created in (the cell or a cgroup below it) */
  cgroup: string;
  protocol: 'tcp' | 'udp';
  address: string;
  port: number;
}

/** One iterator line: "<cgroup id> <family> <protocol> <32 hex> <port>". */
export function parseLine(
  line: string,
): Omit<PreexistingSocket, 'cell' | 'cgroup'> & { cgroupId: bigint } {
  const [id, family, protocol, hex, port] = line.trim().split(' ');
  if (!id || !family || !protocol || !hex || hex.length !== 32 || !port) {
    throw new Error(`malformed iterator line "${line}"`);
  }
  // The words were printed as the little-endian u32s the CPU loaded.
  const bytes = Buffer.alloc(16);
  for (let w = 0; w < 4; w++)
    bytes.writeUInt32LE(Number.parseInt(hex.slice(8 * w, 8 * w + 8), 16), 4 * w);
  const v4 = family === '2';
  return {
    cgroupId: BigInt(id),
    protocol: protocol === '6' ? 'tcp' : 'udp',
    address: formatAddress(v4 ? 4 : 6, v4 ? bytes.subarray(0, 4) : bytes),
    port: Number(port),
  };
}

export function preexistingSockets(pinDir: string): PreexistingSocket[] {
  const state = EngineState.open(pinDir);
  try {
    const root = state.config().cgroupRoot;
    const cells = new Set(state.cells().keys());
    const paths = cgroupPathsById(root);
    const ids = new Map([...paths].map(([id, p]) => [p, id] as const));
    const obj = loadWithPinnedMaps(AUDIT_OBJECT, state.layout);
    let text: string;
    try {
      text =
        runIterator(obj.program('l3_preexisting_tcp')) +
        runIterator(obj.program('l3_preexisting_udp'));
    } finally {
      obj.close();
    }
    const out: PreexistingSocket[] = [];
    for (const line of text.split('\n')) {
      if (!line.trim()) continue;
      const s = parseLine(line);
      const where = paths.get(s.cgroupId);
      if (!where) continue; // outside the managed root
      // Nearest assigned ancestor, as the hooks would resolve it.
      for (let p = where; p === root || p.startsWith(root + '/'); p = path.dirname(p)) {
        const id = ids.get(p);
        if (id !== undefined && cells.has(id)) {
          out.push({
            cell: relativeCellName(p, root),
            cgroup: where,
            protocol: s.protocol,
            address: s.address,
            port: s.port,
          });
          break;
        }
        if (p === root) break;
      }
    }
    return out;
  } finally {
    state.close();
  }
}
