import { AttachType, LinkType } from './constants';
import { BpfError, check } from './errors';
import { libbpf } from './libbpf';
import type { BpfProgram } from './object';
import { Fd } from './fd';
import { getPinned, objInfo, pinObject } from './sys';

// struct bpf_link_create_opts (libbpf 1.1): sz, flags, then per-type unions
// we leave zero (cgroup, netns/sk_lookup, XDP need nothing else).
const LINK_CREATE_OPTS_SIZE = 64;
const LINK_CREATE_OPTS = { flags: 8 };
// struct bpf_link_update_opts.
const LINK_UPDATE_OPTS_SIZE = 16;
const LINK_UPDATE_OPTS = { flags: 8, oldProgFd: 12 };
const BPF_F_REPLACE = 4;
// struct bpf_link_info: type, id, prog_id, then a per-type union at 16.
const LINK_INFO_SIZE = 48;

export interface LinkInfo {
  id: number;
  progId: number;
  type: LinkType;
}

/**
 * A bpf_link (Linux 5.7+ for cgroup links, 5.9 for XDP, 5.9 for sk_lookup)
 * owned through a file descriptor. The attachment lasts while any fd or pin
 * refers to it: a process that exits without `pin()` detaches it.
 */
export class BpfLink implements Disposable {
  private readonly handle: Fd;

  private constructor(fd: number) {
    this.handle = new Fd(fd, 'link');
  }

  /** Takes ownership of a link fd. */
  static fromFd(fd: number): BpfLink {
    return new BpfLink(fd);
  }

  /**
   * Attaches `prog` to `targetFd` (a cgroup directory fd, a netns fd, or an
   * ifindex for XDP) with bpf_link_create. Cgroup links coexist with other
   * programs (multi-attach). A program whose type does not fit the attach
   * type: BpfError 'EINVAL'.
   */
  static create(
    prog: BpfProgram | number,
    targetFd: number,
    attachType: AttachType,
    flags = 0,
  ): BpfLink {
    const progFd = typeof prog === 'number' ? prog : prog.fd;
    const opts = Buffer.alloc(LINK_CREATE_OPTS_SIZE);
    opts.writeBigUInt64LE(BigInt(LINK_CREATE_OPTS_SIZE), 0);
    opts.writeUInt32LE(flags, LINK_CREATE_OPTS.flags);
    const fd = check(
      'bpf_link_create',
      libbpf.bpf_link_create(progFd, targetFd, attachType, opts),
      AttachType[attachType] ?? String(attachType),
    );
    return new BpfLink(fd);
  }

  /**
   * XDP on `ifindex` (in the calling thread's netns) through a bpf_link
   * (Linux 5.9+; bpf_program__attach_xdp does the same): `flags` picks the
   * mode (XdpFlags.DRV_MODE, SKB_MODE). Unlike a netlink attachment it goes
   * away with its last fd or pin, and bpf_link_update swaps its program.
   */
  static xdp(prog: BpfProgram | number, ifindex: number, flags = 0): BpfLink {
    return BpfLink.create(prog, ifindex, AttachType.XDP, flags);
  }

  /** Opens a pinned link; missing pin: BpfError 'ENOENT'. */
  static openPinned(path: string): BpfLink {
    return new BpfLink(getPinned(path));
  }

  get fd(): number {
    if (this.handle.closed) throw new BpfError('BpfLink', 9 /* EBADF */, 'link is closed');
    return this.handle.fd;
  }

  get closed(): boolean {
    return this.handle.closed;
  }

  /**
   * Atomically swaps in another program (same type and attach type). With
   * `oldProgFd`, fails with 'EPERM' unless that program is the current one.
   * Detached link: 'ENOLINK'.
   */
  update(newProgFd: number, opts: { oldProgFd?: number } = {}): void {
    const o = Buffer.alloc(LINK_UPDATE_OPTS_SIZE);
    o.writeBigUInt64LE(BigInt(LINK_UPDATE_OPTS_SIZE), 0);
    if (opts.oldProgFd !== undefined) {
      o.writeUInt32LE(BPF_F_REPLACE, LINK_UPDATE_OPTS.flags);
      o.writeInt32LE(opts.oldProgFd, LINK_UPDATE_OPTS.oldProgFd);
    }
    check('bpf_link_update', libbpf.bpf_link_update(this.fd, newProgFd, o));
  }

  /** Pins the link on bpffs so it survives this process. */
  pin(path: string): void {
    pinObject(this.fd, path);
  }

  /**
   * Detaches the program now, even if other fds or pins still reference the
   * link (they then hold a defunct link). Requires Linux 5.9.
   */
  detach(): void {
    check('bpf_link_detach', libbpf.bpf_link_detach(this.fd));
  }

  info(): LinkInfo {
    const b = objInfo(this.fd, LINK_INFO_SIZE);
    return {
      type: b.readUInt32LE(0) as LinkType,
      id: b.readUInt32LE(4),
      progId: b.readUInt32LE(8),
    };
  }

  /** Closes our fd (idempotent); detaches unless pinned or otherwise held. */
  close(): void {
    this.handle.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
