import { execFileSync } from 'child_process';
import * as fs from 'fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  BpfObject,
  TcAttachPoint,
  XdpFlags,
  inNetns,
  tcAttach,
  tcDetach,
  tcHookCreate,
  tcHookDestroy,
  xdpAttach,
  xdpDetach,
  xdpQueryId,
} from '../../loader';
import { compileFixture, rmTree, tmpDir, uniqueName } from './helpers';

// Everything here happens on a veth pair inside a throwaway netns (this
// kernel has no dummy driver): never
// on a real NIC. inNetns moves only this JS thread, synchronously.
const ns = uniqueName('l3iso-lt').slice(0, 30);
const nsPath = `/run/netns/${ns}`;
let work: string;
let obj: BpfObject;
let ifindex: number;

function ip(...args: string[]): string {
  return execFileSync('ip', ['-n', ns, ...args]).toString();
}

beforeAll(() => {
  work = tmpDir();
  obj = BpfObject.open(compileFixture('tiny', work));
  obj.load();
  execFileSync('ip', ['netns', 'add', ns]);
  ip('link', 'add', 'd0', 'type', 'veth', 'peer', 'name', 'd1');
  ip('link', 'set', 'd0', 'up');
  ip('link', 'set', 'd1', 'up');
  const links = JSON.parse(ip('-j', 'link', 'show', 'd0')) as Array<{ ifindex: number }>;
  ifindex = (links[0] as { ifindex: number }).ifindex;
});

afterAll(() => {
  obj?.close();
  rmTree(work);
  execFileSync('ip', ['netns', 'del', ns]);
});

describe('inNetns', () => {
  it('switches the thread and always switches back', () => {
    const home = fs.readlinkSync('/proc/thread-self/ns/net');
    const inside = inNetns(nsPath, () => fs.readlinkSync('/proc/thread-self/ns/net'));
    expect(inside).not.toBe(home);
    expect(() =>
      inNetns(nsPath, () => {
        throw new Error('boom');
      }),
    ).toThrow('boom');
    expect(fs.readlinkSync('/proc/thread-self/ns/net')).toBe(home);
    expect(() => inNetns('/run/netns/does-not-exist-l3iso', () => 1)).toThrow();
    expect(fs.readlinkSync('/proc/thread-self/ns/net')).toBe(home);
  });
});

describe('XDP (generic mode on a veth)', () => {
  it('attach, query, replace-guard, detach', () => {
    const prog = obj.program('xdp_pass');
    inNetns(nsPath, () => {
      expect(xdpQueryId(ifindex, XdpFlags.SKB_MODE)).toBe(0);
      xdpAttach(ifindex, prog.fd, XdpFlags.SKB_MODE);
      try {
        expect(xdpQueryId(ifindex, XdpFlags.SKB_MODE)).toBe(prog.id);
        expect(() =>
          xdpAttach(ifindex, prog.fd, XdpFlags.SKB_MODE | XdpFlags.UPDATE_IF_NOEXIST),
        ).toThrow(expect.objectContaining({ code: 'EBUSY', call: 'bpf_xdp_attach' }));
      } finally {
        xdpDetach(ifindex, XdpFlags.SKB_MODE);
      }
      expect(xdpQueryId(ifindex, XdpFlags.SKB_MODE)).toBe(0);
      // libbpf filters a netlink dump by ifindex: unknown devices read as "none".
      expect(xdpQueryId(999999)).toBe(0);
    });
    // Netlink attachments are per netns: nothing leaked into ours.
    expect(ip('link', 'show', 'd0')).not.toMatch(/xdp/);
  });
});

describe('tc (clsact on a veth)', () => {
  it('hook create, attach, detach, destroy', () => {
    const prog = obj.program('tc_ok');
    inNetns(nsPath, () => {
      expect(tcHookCreate(ifindex, TcAttachPoint.EGRESS)).toBe(true);
      expect(tcHookCreate(ifindex, TcAttachPoint.INGRESS)).toBe(false); // same clsact qdisc
      const f = tcAttach(ifindex, TcAttachPoint.EGRESS, prog.fd, { handle: 1, priority: 1 });
      expect(f).toEqual({ handle: 1, priority: 1, progId: prog.id });
      expect(() =>
        tcAttach(ifindex, TcAttachPoint.EGRESS, prog.fd, { handle: 1, priority: 1 }),
      ).toThrow(expect.objectContaining({ code: 'EEXIST' }));
      tcAttach(ifindex, TcAttachPoint.EGRESS, prog.fd, { handle: 1, priority: 1, replace: true });
      const auto = tcAttach(ifindex, TcAttachPoint.INGRESS, prog.fd);
      expect(auto.handle).toBeGreaterThan(0);
      expect(auto.priority).toBeGreaterThan(0);
      const filters = execFileSync('tc', [
        '-n',
        ns,
        'filter',
        'show',
        'dev',
        'd0',
        'egress',
      ]).toString();
      expect(filters).toMatch(/tc_ok.*direct-action/);
      tcDetach(ifindex, TcAttachPoint.EGRESS, f);
      expect(() => tcDetach(ifindex, TcAttachPoint.EGRESS, f)).toThrow(
        expect.objectContaining({ code: 'ENOENT' }),
      );
      tcDetach(ifindex, TcAttachPoint.INGRESS, auto);
      tcHookDestroy(ifindex, TcAttachPoint.INGRESS | TcAttachPoint.EGRESS);
    });
    expect(execFileSync('tc', ['-n', ns, 'qdisc', 'show', 'dev', 'd0']).toString()).not.toMatch(
      /clsact/,
    );
  });
});
