// Issue 12 item 6: `up --managed-prefix` makes each prefix local with one
// AnyIP route (`local CIDR dev lo`) in the engine's netns, so a cell binds
// any address of it with no address on an interface; `down` removes the
// routes up added and only those; `assign` warns about an address no bind
// could use (neither local nor managed).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSandbox, V4, type Sandbox } from '../harness/sandbox';

const ANY4 = '198.51.100.0/24';
const ANY6 = '2001:db8:77::/64';
const FOREIGN = '203.0.113.0/28'; // a local route the operator made, not l3iso

async function localRoutes(sb: Sandbox, fam: '-4' | '-6'): Promise<string[]> {
  const r = await sb.onHost(['ip', '-j', fam, 'route', 'show', 'table', 'local', 'dev', 'lo']);
  expect(r.status, r.stderr).toBe(0);
  return (JSON.parse(r.stdout) as { type: string; dst: string }[])
    .filter((x) => x.type === 'local')
    .map((x) => x.dst);
}

describe('managed-prefix AnyIP routes', () => {
  let sb: Sandbox;
  beforeAll(async () => {
    sb = await createSandbox();
    const r = await sb.onHost(['ip', 'route', 'add', 'local', FOREIGN, 'dev', 'lo']);
    expect(r.status, r.stderr).toBe(0);
  });
  afterAll(async () => {
    await sb?.destroy();
  });

  it('without a managed prefix, assign warns and the bind fails', async () => {
    await sb.up();
    sb.cg('c');
    const r = await sb.cliOk(['assign', 'c', '198.51.100.7', '--json']);
    expect(r.json.notLocal).toEqual(['198.51.100.7']);
    expect(r.stderr).toMatch(/198\.51\.100\.7 is neither local .* EADDRNOTAVAIL/);
    const p = await sb.probe('c', [{ op: 'bind_new', fam: 4, addr: '198.51.100.7' }], {
      keepGoing: true,
    });
    expect(p.ops[0]).toMatchObject({ ok: false, errno: 'EADDRNOTAVAIL' });
    await sb.cliOk(['release', 'c']);
    await sb.cliOk(['down']);
  });

  it('up --managed-prefix adds one local route per prefix; cells bind any address of it', async () => {
    const r = await sb.up(['--managed-prefix', ANY4, ANY6, FOREIGN, '--json']);
    expect(r.json.routes).toMatchObject({ added: [ANY4, ANY6], removed: [], warnings: [] });
    expect(await localRoutes(sb, '-4')).toEqual(expect.arrayContaining([ANY4, FOREIGN]));
    expect(await localRoutes(sb, '-6')).toContain(ANY6);
    sb.cg('c');
    const a = await sb.cliOk(['assign', 'c', '198.51.100.7', V4(1), '--json']);
    expect(a.json.notLocal).toBeUndefined();
    expect(a.stderr).not.toMatch(/neither local/);
    // IPv6 checks bind() against interface addresses, not local routes:
    // an AnyIP IPv6 address binds only with net.ipv6.ip_nonlocal_bind=1.
    const v6 = await sb.cliOk(['assign', 'c', '2001:db8:77::9', '--json']);
    expect(v6.json.notLocal).toEqual(['2001:db8:77::9']);
    const binds = [
      { op: 'bind_new', fam: 4, addr: '198.51.100.7' },
      { op: 'bind_new', fam: 6, addr: '2001:db8:77::9' },
      { op: 'bind_new', fam: 4, addr: '198.51.100.8' },
    ];
    const p = await sb.probe('c', binds, { keepGoing: true });
    expect(p.ops[0]).toMatchObject({ ok: true });
    expect(p.ops[1]).toMatchObject({ ok: false, errno: 'EADDRNOTAVAIL' });
    // local, but not the cell's: the hooks refuse it
    expect(p.ops[2]).toMatchObject({ ok: false, errno: 'EADDRNOTAVAIL' });
    const s = await sb.onHost(['sysctl', '-q', '-w', 'net.ipv6.ip_nonlocal_bind=1']);
    expect(s.status, s.stderr).toBe(0);
    const again = await sb.cliOk(['assign', 'c', '2001:db8:77::9', '--json']);
    expect(again.json.notLocal).toBeUndefined();
    const q = await sb.probe('c', binds, { keepGoing: true });
    expect(q.ops[1]).toMatchObject({ ok: true });
    expect(q.ops[2]).toMatchObject({ ok: false, errno: 'EADDRNOTAVAIL' });
    // an address on d0 is local; one in no prefix on no interface is not
    const w = await sb.cliOk(['assign', 'c', '10.123.0.1', '--json']);
    expect(w.json.notLocal).toEqual(['10.123.0.1']);
  });

  it('up again with another set swaps its own routes; down removes only its own', async () => {
    const r = await sb.up(['--managed-prefix', ANY4, '--json']);
    expect(r.json.routes).toMatchObject({ added: [], removed: [ANY6] });
    expect(await localRoutes(sb, '-6')).not.toContain(ANY6);
    const d = await sb.cliOk(['down', '--force', '--json']);
    expect(d.json.routes).toMatchObject({ removed: [ANY4], warnings: [] });
    const left = await localRoutes(sb, '-4');
    expect(left).not.toContain(ANY4);
    expect(left).toContain(FOREIGN);
  });
});
