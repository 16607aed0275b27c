/**
 * Kernel features the engine needs. `up` refuses to start without a
 * required one (fail closed: no silently reduced mode); `doctor` reports all
 * of them, including the ones only a full program load and attach can show.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { BpfLink, BpfObject } from '../../loader';
import { L3isoError } from '../errors';
import { findCgroup2Mount } from '../model/cgroup';
import { bpfObjectPath } from './paths';
import { SOCK_OBJECT, SOCK_PROGRAMS } from './programs';

export interface FeatureCheck {
  name: string;
  ok: boolean;
  /** `up` refuses to run without it */
  required: boolean;
  detail: string;
  /** what is lost when it is missing */
  disables?: string;
}

const BPF_FS_MAGIC = 0xcafe4a11;
/** bpf_set_retval, the last helper the socket hooks rely on. */
const MIN_KERNEL: [number, number] = [5, 18];

function kernelVersion(): [number, number] {
  const m = /^(\d+)\.(\d+)/.exec(os.release());
  return m ? [Number(m[1]), Number(m[2])] : [0, 0];
}

function check(
  name: string,
  required: boolean,
  disables: string,
  probe: () => string,
): FeatureCheck {
  try {
    return { name, ok: true, required, detail: probe() };
  } catch (err) {
    return {
      name,
      ok: false,
      required,
      detail: err instanceof Error ? err.message : String(err),
      disables,
    };
  }
}

/** Cheap checks that need no program load. */
export function staticChecks(pinRoot: string): FeatureCheck[] {
  return [
    check(
      'kernel >= 5.18',
      true,
      'everything (bpf_set_retval, sk_storage in sock_addr hooks)',
      () => {
        const [major, minor] = kernelVersion();
        if (major < MIN_KERNEL[0] || (major === MIN_KERNEL[0] && minor < MIN_KERNEL[1])) {
          throw new Error(`kernel ${os.release()} is older than ${MIN_KERNEL.join('.')}`);
        }
        return os.release();
      },
    ),
    check('cgroup v2', true, 'everything: cells are cgroup v2 subtrees', () => findCgroup2Mount()),
    check('bpffs', true, 'pinning: the engine could not outlive the CLI', () => {
      let dir = pinRoot;
      while (!fs.existsSync(dir)) dir = path.dirname(dir);
      const type = Number(fs.statfsSync(dir).type);
      if (type !== BPF_FS_MAGIC) {
        throw new Error(`${dir} is not on bpffs (mount -t bpf bpf /sys/fs/bpf)`);
      }
      return dir;
    }),
    check('BTF', true, 'socket storage maps (they need BTF)', () => {
      if (!fs.existsSync('/sys/kernel/btf/vmlinux'))
        throw new Error('/sys/kernel/btf/vmlinux is missing (CONFIG_DEBUG_INFO_BTF)');
      return '/sys/kernel/btf/vmlinux';
    }),
  ];
}

export function requireFeatures(pinRoot: string): void {
  const missing = staticChecks(pinRoot).filter((f) => f.required && !f.ok);
  if (missing.length > 0) {
    throw new L3isoError(
      'EFEATURE_MISSING',
      `kernel feature missing: ${missing.map((f) => `${f.name} (${f.detail})`).join('; ')}`,
      'run `l3iso doctor` for details',
    );
  }
}

/** Full probe: load the real objects and attach every program to a
 * throwaway cgroup (never the host's root). */
export function programChecks(): FeatureCheck[] {
  const checks: FeatureCheck[] = [];
  let obj: BpfObject | undefined;
  const load = check('socket hook programs load', true, 'all socket confinement', () => {
    obj = BpfObject.open(bpfObjectPath(SOCK_OBJECT));
    obj.load();
    return `${SOCK_PROGRAMS.length} programs verified (sk_storage, bpf_set_retval, bpf_bind)`;
  });
  checks.push(load);
  if (!load.ok || !obj) {
    if (obj) (obj as BpfObject).close();
    return checks;
  }
  const loaded: BpfObject = obj;
  let mount: string;
  try {
    mount = findCgroup2Mount();
  } catch {
    loaded.close();
    return checks;
  }
  const scratch = path.join(mount, `l3iso-doctor-${process.pid}`);
  try {
    fs.mkdirSync(scratch);
    const fd = fs.openSync(scratch, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
    try {
      for (const p of SOCK_PROGRAMS) {
        checks.push(
          check(`attach ${p.program}`, true, p.purpose, () => {
            const link = BpfLink.create(loaded.program(p.program).fd, fd, p.attach);
            link.close();
            return 'bpf_link_create on a cgroup';
          }),
        );
      }
    } finally {
      fs.closeSync(fd);
    }
  } finally {
    loaded.close();
    try {
      fs.rmdirSync(scratch);
    } catch {
      /* it did not get created */
    }
  }
  return checks;
}

/** Listed for completeness: the design must work without them. */
export function optionalChecks(): FeatureCheck[] {
  return [
    check('BPF LSM (not used)', false, 'nothing: l3iso does not need it', () => {
      const lsm = fs.existsSync('/sys/kernel/security/lsm')
        ? fs.readFileSync('/sys/kernel/security/lsm', 'utf8').trim()
        : '';
      return lsm.split(',').includes('bpf')
        ? 'listed; LSM program loads are refused on some hosts, so l3iso never needs it'
        : 'not enabled; l3iso does not need it';
    }),
  ];
}

export function doctor(pinRoot: string): { ok: boolean; features: FeatureCheck[] } {
  const features = [...staticChecks(pinRoot), ...programChecks(), ...optionalChecks()];
  return { ok: features.every((f) => f.ok || !f.required), features };
}
