/**
 * Release by cgroup id, for callers that outlive the cgroup: a runtime's
 * poststop hook runs after the container's cgroup is removed, so no path
 * names the cell any more, but its id (the cell key) is still known.
 */
import { forgetCell } from './cells';
import { withLock } from '../dataplane/lock';
import { requireRoot } from '../dataplane/privilege';
import { EngineState } from '../dataplane/state';

export interface ReleaseByIdResult {
  id: string;
  /** false: no cell had this id (already released, or gc got there first) */
  found: boolean;
  released: string[];
  socketsDestroyed: number;
}

export function releaseCellById(pinDir: string, id: bigint): ReleaseByIdResult {
  requireRoot('release');
  const state = EngineState.open(pinDir);
  try {
    return withLock(state.layout, () => {
      if (!state.cell(id))
        return { id: id.toString(), found: false, released: [], socketsDestroyed: 0 };
      return { id: id.toString(), found: true, ...forgetCell(state, id) };
    });
  } finally {
    state.close();
  }
}
