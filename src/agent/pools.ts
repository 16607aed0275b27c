/**
 * Where the agent's pool requests go: this host's pool record (the default,
 * no etcd at all), or the fleet's datastore (`agent --etcd`, src/fleet/).
 */
import type { AssignOptions, AssignResult } from '../cells/cells';
import {
  addPool,
  assignFromPool,
  deletePool,
  listPools,
  type PoolAddResult,
  type PoolDelResult,
} from '../pools/pools';
import type { PoolDef } from '../pools/store';
import type { PoolsResponse } from './api';

export interface PoolBackend {
  add(def: PoolDef): Promise<PoolAddResult>;
  del(name: string, force: boolean): Promise<PoolDelResult>;
  list(): Promise<PoolsResponse>;
  assign(cgroup: string, pool: string, count: number, opts: AssignOptions): Promise<AssignResult>;
  /** after a release: a fleet host gives back the blocks left empty */
  released(): Promise<void>;
  close(): Promise<void>;
}

export function localPools(pinDir: string): PoolBackend {
  return {
    add: (d) => Promise.resolve(addPool(pinDir, d.name, d.cidr, d.blockSize)),
    del: (name, force) => Promise.resolve(deletePool(pinDir, name, { force })),
    list: () => Promise.resolve({ pools: listPools(pinDir) }),
    assign: (cgroup, pool, count, opts) =>
      Promise.resolve(assignFromPool(pinDir, cgroup, pool, count, opts)),
    released: () => Promise.resolve(),
    close: () => Promise.resolve(),
  };
}
