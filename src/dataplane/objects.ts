/**
 * Loading a BPF object against an engine's pinned maps: every object
 * declares the shared maps (bpf/maps.bpf.h), and each load reuses the pinned
 * instance when there is one, so all objects see the same state and it
 * survives upgrades.
 */
import * as fs from 'node:fs';
import { BpfLoadError, BpfMap, BpfObject, type MapSpec } from '../../loader';
import { L3isoError } from '../errors';
import { bpfObjectPath, pinAtomically, type PinLayout } from './paths';
import { SHARED_MAPS, mapCapacity } from './programs';

export interface MapOutcome {
  name: string;
  action: 'created' | 'reused';
  maxEntries: number;
}

/** Opens an object whose shared maps are the pinned ones when they exist
 * (so state survives upgrades), loads it and pins the maps it created. */
export interface CreateMaps {
  /** capacity of the maps this load creates */
  maxCells: number;
  /** what was created or reused, for `up`'s report */
  result: { maps: MapOutcome[] };
  /** how to take back what this load pinned, should a later step fail */
  undo: (() => void)[];
}

/**
 * Loads `file` against the engine's pinned maps. Without `create`, every
 * shared map must already be pinned (the engine is up); only `up` passes
 * `create` and may make the missing ones.
 */
export function loadWithPinnedMaps(
  file: string,
  layout: PinLayout,
  create?: CreateMaps,
): BpfObject {
  const obj = BpfObject.open(bpfObjectPath(file));
  const reused: BpfMap[] = [];
  const created: string[] = [];
  try {
    for (const spec of obj.mapSpecs()) {
      if (!(SHARED_MAPS as readonly string[]).includes(spec.name)) continue;
      const pinned = layout.map(spec.name);
      if (fs.existsSync(pinned)) {
        const map = BpfMap.openPinned(pinned);
        reused.push(map);
        reusePinned(obj, file, spec, map, create?.result);
      } else {
        if (!create) {
          throw new L3isoError(
            'ENOT_UP',
            `engine in ${layout.root} has no pinned map ${spec.name}`,
            'run `l3iso up` first',
          );
        }
        planCreated(obj, spec, create);
        created.push(spec.name);
      }
    }
    loadOrExplain(obj, file);
    pinCreated(obj, layout, created, create?.undo);
    return obj;
  } catch (err) {
    obj.close();
    throw err;
  } finally {
    for (const m of reused) m.close();
  }
}

/** Has obj use the pinned map, refusing one of another layout. */
function reusePinned(
  obj: BpfObject,
  file: string,
  spec: MapSpec,
  map: BpfMap,
  result: CreateMaps['result'] | undefined,
): void {
  if (map.keySize !== spec.keySize || map.valueSize !== spec.valueSize || map.type !== spec.type) {
    // Before anything is loaded: a program built for other sizes
    // would read this map's entries wrongly.
    throw new L3isoError(
      'EPIN_DIR',
      `${file} was built for another layout than the engine's pinned maps: its ${spec.name} is type ${spec.type}, key ${spec.keySize} B, value ${spec.valueSize} B; the pinned one is type ${map.type}, key ${map.keySize} B, value ${map.valueSize} B; nothing was changed`,
      'use the BPF objects of the l3iso that brought the engine up (npm run build:bpf)',
    );
  }
  obj.reuseMap(spec.name, map);
  if (!result?.maps.some((m) => m.name === spec.name))
    result?.maps.push({ name: spec.name, action: 'reused', maxEntries: map.maxEntries });
}

/** Sizes a map the load will create, and reports it. */
function planCreated(obj: BpfObject, spec: MapSpec, create: CreateMaps): void {
  const capacity = mapCapacity(spec.name, create.maxCells);
  if (capacity !== undefined) obj.setMaxEntries(spec.name, capacity);
  create.result.maps.push({
    name: spec.name,
    action: 'created',
    maxEntries: capacity ?? spec.maxEntries,
  });
}

/** obj.load(); a verifier refusal becomes a missing-feature error that points at doctor. */
function loadOrExplain(obj: BpfObject, file: string): void {
  try {
    obj.load();
  } catch (err) {
    if (err instanceof BpfLoadError) {
      throw new L3isoError(
        'EFEATURE_MISSING',
        `the kernel refused ${file}: ${err.message}`,
        'run `l3iso doctor`',
        { cause: err },
      );
    }
    throw err;
  }
}

/** Pins the maps this load created, each undoable should a later step fail. */
function pinCreated(
  obj: BpfObject,
  layout: PinLayout,
  created: readonly string[],
  undo: (() => void)[] | undefined,
): void {
  for (const name of created) {
    const map = obj.map(name);
    try {
      pinAtomically(layout.map(name), (p) => map.pin(p));
    } finally {
      map.close();
    }
    undo?.push(() => fs.unlinkSync(layout.map(name)));
  }
}
