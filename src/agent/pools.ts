/**
 * Where the agent's pool requests go: this host's pool record (the default,
 * no etcd at all), or the fleet's datastore (`agent --etcd`, src/fleet/).
 */
import type { AssignOptions, AssignResult } from '../cells/cells';
import type { Engine } from '../engine/engine';
import type { PoolAddResult, PoolDelResult } from '../pools/pools';
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

/** This host's pools, through the agent's one Engine. */
export function localPools(engine: () => Engine): PoolBackend {
  return {
    add: (d) => Promise.resolve(engine().poolAdd(d.name, d.cidr, d.blockSize)),
    del: (name, force) => Promise.resolve(engine().poolDel(name, { force })),
    list: () => Promise.resolve({ pools: engine().poolList() }),
    assign: (cgroup, pool, count, opts) =>
      Promise.resolve(engine().assignFromPool(cgroup, pool, count, opts)),
    released: () => Promise.resolve(),
    close: () => Promise.resolve(),
  };
}
