/**
 * Kernel features the engine needs. `up` refuses to start without a
 * required one (fail closed: no silently reduced mode); `doctor` reports all
 * of them, including the ones only a full program load and attach can show.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  AttachType,
  BpfLink,
  BpfObject,
  TcAttachPoint,
  XdpFlags,
  inNetns,
  tcAttach,
  tcHookCreate,
  xdpAttach,
  xdpDetach,
} from '../../loader';
import { L3isoError } from '../errors';
import { findCgroup2Mount } from '../model/cgroup';
import { bpfObjectPath } from '../dataplane/paths';
import {
  ATTACHED_OBJECTS,
  LOOPBACK_IFINDEX,
  REVOKE_OBJECT,
  UPLINK_OBJECT,
  type ObjectSpec,
  type ProgramAttachment,
} from '../dataplane/programs';
import { ifindexOf } from '../dataplane/uplink';

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
/** bpf_sock_destroy (revocation), the newest kernel feature relied on. */
const MIN_KERNEL: [number, number] = [6, 5];

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
      `kernel >= ${MIN_KERNEL.join('.')}`,
      true,
      'everything (bpf_set_retval 5.18, sk_lookup 5.9, bpf_sock_destroy 6.5)',
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

/** Revocation is the one required feature no attach exercises: load it. */
function revocationCheck(): FeatureCheck {
  return check(
    'socket revocation (iter/tcp, iter/udp, bpf_sock_destroy)',
    true,
    'release leaves existing sockets open',
    () => {
      const obj = BpfObject.open(bpfObjectPath(REVOKE_OBJECT));
      try {
        obj.load();
      } finally {
        obj.close();
      }
      return 'Linux 6.5+ kfunc available';
    },
  );
}

export function requireFeatures(pinRoot: string): void {
  const missing = [...staticChecks(pinRoot), revocationCheck()].filter((f) => f.required && !f.ok);
  if (missing.length > 0) {
    throw new L3isoError(
      'EFEATURE_MISSING',
      `kernel feature missing: ${missing.map((f) => `${f.name} (${f.detail})`).join('; ')}`,
      'run `l3iso doctor` for details',
    );
  }
}

/** Full probe: load the real objects and attach every program to a
 * throwaway cgroup and a throwaway network namespace (never the host's). */
export function programChecks(): FeatureCheck[] {
  const checks: FeatureCheck[] = [];
  let mount: string;
  try {
    mount = findCgroup2Mount();
  } catch {
    return checks;
  }
  const scratchName = `l3iso-doctor-${process.pid}`;
  const scratchCgroup = path.join(mount, scratchName);
  fs.mkdirSync(scratchCgroup);
  let netnsFd: number | undefined;
  let cgroupFd: number | undefined;
  try {
    execFileSync('ip', ['netns', 'add', scratchName], { stdio: 'ignore' });
    netnsFd = fs.openSync(`/run/netns/${scratchName}`, fs.constants.O_RDONLY);
    cgroupFd = fs.openSync(scratchCgroup, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
    const scratch = { netns: scratchName, cgroupFd, netnsFd };
    for (const spec of ATTACHED_OBJECTS) checks.push(...objectChecks(spec, scratch));
    checks.push(...uplinkChecks(scratchName));
    checks.push(revocationCheck());
  } catch (err) {
    checks.push({
      name: 'throwaway netns and cgroup for probing',
      ok: false,
      required: true,
      detail: err instanceof Error ? err.message : String(err),
    });
  } finally {
    if (cgroupFd !== undefined) fs.closeSync(cgroupFd);
    if (netnsFd !== undefined) fs.closeSync(netnsFd);
    try {
      execFileSync('ip', ['netns', 'del', scratchName], { stdio: 'ignore' });
    } catch {
      /* it did not get created */
    }
    fs.rmdirSync(scratchCgroup);
  }
  return checks;
}

/** The throwaway netns (by name and fd) and cgroup (fd) programs attach to. */
interface Scratch {
  netns: string;
  netnsFd: number;
  cgroupFd: number;
}

/** One object: it loads, then each of its programs attaches where the engine puts it. */
function objectChecks(spec: ObjectSpec, scratch: Scratch): FeatureCheck[] {
  let obj: BpfObject | undefined;
  const load = check(
    `${spec.file} loads`,
    true,
    spec.programs.map((p) => p.purpose).join('; '),
    () => {
      obj = BpfObject.open(bpfObjectPath(spec.file));
      obj.load();
      return `${spec.programs.length} programs verified`;
    },
  );
  if (!obj) return [load];
  const loaded: BpfObject = obj;
  try {
    if (!load.ok) return [load];
    return [load, ...spec.programs.map((p) => attachCheck(loaded, p, scratch))];
  } finally {
    loaded.close();
  }
}

function attachCheck(loaded: BpfObject, p: ProgramAttachment, scratch: Scratch): FeatureCheck {
  const fd = p.target === 'cgroup' ? scratch.cgroupFd : scratch.netnsFd;
  return check(`attach ${p.program}`, true, p.purpose, () => {
    if (p.target === 'lo')
      inNetns(`/run/netns/${scratch.netns}`, () =>
        BpfLink.create(loaded.program(p.program).fd, LOOPBACK_IFINDEX, p.attach).close(),
      );
    else BpfLink.create(loaded.program(p.program).fd, fd, p.attach).close();
    return `${AttachType[p.attach]} on a ${p.target}`;
  });
}

/** The uplink programs on a veth inside the throwaway netns: native XDP
 * (optional: drivers differ), generic XDP and tc egress (required for
 * `attach`). */
function uplinkChecks(netns: string): FeatureCheck[] {
  const out: FeatureCheck[] = [];
  let obj: BpfObject | undefined;
  const load = check(
    `${UPLINK_OBJECT} loads`,
    false,
    '`attach` (uplink filtering and counters)',
    () => {
      obj = BpfObject.open(bpfObjectPath(UPLINK_OBJECT));
      obj.load();
      return 'XDP and tc programs verified';
    },
  );
  out.push(load);
  if (!obj) return out;
  const loaded: BpfObject = obj;
  try {
    if (!load.ok) return out;
    vethChecks(loaded, netns, out);
  } catch (err) {
    out.push({
      name: 'uplink probe',
      ok: false,
      required: false,
      detail: err instanceof Error ? err.message : String(err),
    });
  } finally {
    loaded.close();
  }
  return out;
}

/**
 * XDP in both modes and tc egress on a veth made in the throwaway netns,
 * pushed to out as they run: a later failure keeps the earlier results.
 */
function vethChecks(loaded: BpfObject, netns: string, out: FeatureCheck[]): void {
  execFileSync(
    'ip',
    ['-n', netns, 'link', 'add', 'probe0', 'type', 'veth', 'peer', 'name', 'probe1'],
    { stdio: 'ignore' },
  );
  execFileSync('ip', ['-n', netns, 'link', 'set', 'probe0', 'up'], { stdio: 'ignore' });
  const ifindex = ifindexOf('probe0', netns);
  inNetns(`/run/netns/${netns}`, () => {
    const xdp = loaded.program('l3_xdp').fd;
    for (const [mode, flags] of [
      ['native', XdpFlags.DRV_MODE],
      ['generic', XdpFlags.SKB_MODE],
    ] as const) {
      out.push(
        check(`XDP ${mode} mode`, false, `${mode} XDP on drivers that lack it`, () => {
          xdpAttach(ifindex, xdp, flags);
          xdpDetach(ifindex, flags);
          return 'attached to a veth';
        }),
      );
    }
    out.push(
      check('tc egress (clsact)', false, '`attach`: tx counters and anti-spoof at the wire', () => {
        tcHookCreate(ifindex, TcAttachPoint.EGRESS);
        tcAttach(ifindex, TcAttachPoint.EGRESS, loaded.program('l3_tc_egress').fd);
        return 'attached to a veth';
      }),
    );
  });
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
