// `l3iso exec` provides the threat model's runtime requirements itself
// (README, Threat model). Each test is a real escape attempt from inside
// exec, with the tool an attacker would use, and says what stops it.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CLI,
  createSandbox,
  mustSync,
  parseJsonLines,
  python,
  run,
  V4,
  type BgProc,
  type Sandbox,
} from '../harness/sandbox';
import { CAP, THREAT_MODEL_FORBIDDEN } from '../harness/linux-caps';

/** runc's default set without NET_RAW. */
const DEFAULT_SET = [
  CAP.chown,
  CAP.dac_override,
  CAP.fsetid,
  CAP.fowner,
  CAP.mknod,
  CAP.setgid,
  CAP.setuid,
  CAP.setfcap,
  CAP.setpcap,
  CAP.net_bind_service,
  CAP.sys_chroot,
  CAP.kill,
  CAP.audit_write,
].reduce((m, b) => m | (1n << BigInt(b)), 0n);

const CELL = V4(5);

const FORBIDDEN = [...THREAT_MODEL_FORBIDDEN, 'sys_rawio'] as const;

// Every attempt prints one JSON line; errors are errno names.
const ESCAPE = String.raw`
import ctypes, errno, json, os, socket, sys
libc = ctypes.CDLL(None, use_errno=True)
def out(**kw):
    print(json.dumps(kw), flush=True)
def err(e):
    return errno.errorcode.get(e.errno, str(e.errno))
def attempt(name, fn):
    try:
        out(name=name, ok=True, value=fn())
    except OSError as e:
        out(name=name, ok=False, errno=err(e))
def sys_call(nr, *args):
    r = libc.syscall(nr, *args)
    if r < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return r
def write(p, text):
    with open(p, "w") as f:
        f.write(text)
def status():
    res = {}
    for line in open("/proc/self/status"):
        k, _, v = line.partition(":")
        res[k] = v.strip()
    return res
def bind_any():
    s = socket.socket()
    s.bind(("0.0.0.0", 0))
    return s.getsockname()[0]
mode, args = sys.argv[1], sys.argv[2:]
if mode == "status":
    s = status()
    out(name="status", **{k: s[k] for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Uid", "Gid", "Groups")})
elif mode == "ptrace":
    pid = int(args[0])
    PTRACE_ATTACH = 16
    attempt("ptrace", lambda: sys_call(101 if os.uname().machine == "x86_64" else 117, PTRACE_ATTACH, pid, 0, 0))
    def getfd():
        pidfd = sys_call(434, pid, 0)  # pidfd_open: one number on every arch
        return sys_call(438, pidfd, 0, 0)  # pidfd_getfd
    attempt("pidfd_getfd", getfd)
    attempt("proc_root", lambda: os.listdir("/proc/%d/root/" % pid))
    attempt("proc_environ", lambda: len(open("/proc/%d/environ" % pid, "rb").read()))
    attempt("proc_entry", lambda: os.stat("/proc/%d" % pid).st_mode)
    attempt("kill", lambda: os.kill(pid, 15))
elif mode == "pids":
    s = status()
    out(name="pids", value=sorted(int(e) for e in os.listdir("/proc") if e.isdigit()),
        me=os.getpid(), init=open("/proc/1/comm").read().strip(), nspid=s["NSpid"].split(),
        ns=os.readlink("/proc/self/ns/pid"))
elif mode == "steal":
    # Every inet socket of every process this cell can see, taken with pidfd_getfd.
    stolen = []
    for p in [int(e) for e in os.listdir("/proc") if e.isdigit() and int(e) != os.getpid()]:
        try:
            pidfd = sys_call(434, p, 0)
        except OSError:
            continue
        for fd in range(64):
            try:
                nfd = sys_call(438, pidfd, fd, 0)
            except OSError:
                continue
            try:
                with socket.socket(fileno=nfd) as sk:
                    if sk.family in (socket.AF_INET, socket.AF_INET6):
                        stolen.append(sk.getsockname()[0])
            except OSError:
                os.close(nfd)
        os.close(pidfd)
    out(name="stolen", value=stolen)
elif mode == "mounts":
    rows = []
    for l in open("/proc/self/mountinfo"):
        f = l.split()
        rows.append({"at": f[4], "opts": f[5].split(","), "type": f[f.index("-") + 1]})
    out(name="mounts", value=rows)
elif mode == "getfd":
    pid, fd = int(args[0]), int(args[1])
    attempt("pidfd_getfd", lambda: sys_call(438, sys_call(434, pid, 0), fd, 0))
elif mode == "cgroup":
    cg2, other = args
    out(name="self", value=open("/proc/self/cgroup").read().splitlines())
    mine = str(os.getpid())
    attempt("own_root_procs", lambda: write(os.path.join(cg2, "cgroup.procs"), mine))
    attempt("host_path_procs", lambda: write(os.path.join(other, "cgroup.procs"), mine))
    attempt("via_proc1", lambda: write("/proc/1/root" + os.path.join(other, "cgroup.procs"), mine))
    attempt("mkdir", lambda: os.mkdir(os.path.join(cg2, "child")))
    attempt("own_procs_lists_me", lambda: mine in open(os.path.join(cg2, "cgroup.procs")).read().split())
    attempt("still_in_cell", bind_any)
elif mode == "bpffs":
    pin = args[0]
    attempt("mounts", lambda: [l.split()[4] for l in open("/proc/self/mountinfo") if " - bpf " in l])
    for p in (pin, "/proc/1/root" + pin):
        attempt("open " + p, lambda: os.open(p, os.O_RDONLY))
elif mode == "sysctl":
    p = "/proc/sys/net/ipv4/ping_group_range"
    attempt("write", lambda: write(p, args[0]))
    attempt("read", lambda: open(p).read().split())
elif mode == "write":
    attempt("write", lambda: write(args[0], "x"))
elif mode == "sigint":
    import signal
    n = 0
    def on_int(*_):
        global n
        n += 1
        print("GOT %d" % n, flush=True)
    def on_term(*_):
        print("TERM after %d" % n, flush=True)
        sys.exit(0)
    signal.signal(signal.SIGINT, on_int)
    signal.signal(signal.SIGTERM, on_term)
    print("READY", flush=True)
    while True:
        signal.pause()
`;

// Runs argv on a pty, as a terminal's session leader and foreground group:
// writes ^C once the command says READY, then, once the command has seen
// it, SIGTERM to l3iso (forwarded to the command). A SIGINT that l3iso
// passed on as well would reach the command before the SIGTERM does: l3iso
// handles signals in arrival order, and a pending SIGINT (2) is delivered
// before a pending SIGTERM (15).
const PTY = String.raw`
import json, os, pty, signal, sys
pid, fd = pty.fork()
if pid == 0:
    os.execvp(sys.argv[1], sys.argv[1:])
buf = b""
def until(tok):
    global buf
    while tok not in buf:
        try:
            d = os.read(fd, 4096)
        except OSError:
            d = b""
        if not d:
            return False
        buf += d
    return True
if until(b"READY"):
    os.write(fd, b"\x03")
    if until(b"GOT 1"):
        os.kill(pid, signal.SIGTERM)
until(b"\0")
_, st = os.waitpid(pid, 0)
print(json.dumps({"out": buf.decode(errors="replace"), "status": os.waitstatus_to_exitcode(st)}))
`;

interface Attempt {
  name: string;
  ok: boolean;
  value?: unknown;
  errno?: string;
}

function capBits(hex: string): bigint {
  return BigInt('0x' + hex);
}

describe('exec: the runtime requirements, tried from inside', () => {
  let sb: Sandbox;
  let tmp: string;
  // Each exec's cell is gone when it returns, so they can all use one address.
  const addr = () => CELL;
  beforeAll(async () => {
    sb = await createSandbox();
    await sb.up();
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), `${sb.id}-`));
    fs.chmodSync(tmp, 0o755);
  });
  afterAll(async () => {
    spawnSync('umount', [path.join(tmp, 'ro')]);
    fs.rmSync(tmp, { recursive: true, force: true });
    await sb?.destroy();
  });

  const escape = async (mode: string, args: string[] = [], execOpts: string[] = []) => {
    const r = await sb.cli([
      'exec',
      ...execOpts,
      addr(),
      '--',
      python(),
      '-c',
      ESCAPE,
      mode,
      ...args,
    ]);
    expect(r.status, r.stderr).toBe(0);
    return parseJsonLines(r.stdout) as Attempt[];
  };
  const byName = (rs: Attempt[], name: string) => rs.find((a) => a.name === name)!;

  it('every capability set is at most the default set, none of the dangerous ones; no_new_privs', async () => {
    // The caller hands down inheritable and ambient capabilities: they must
    // not reach the command.
    const wrap = [
      'setpriv',
      '--inh-caps=+sys_ptrace,+net_raw,+sys_admin',
      '--ambient-caps=+sys_ptrace,+net_raw,+sys_admin',
      '--',
    ];
    const r = await sb.cli(['exec', addr(), '--', python(), '-c', ESCAPE, 'status'], { wrap });
    expect(r.status, r.stderr).toBe(0);
    const s = parseJsonLines(r.stdout)[0] as Record<string, string>;
    expect(capBits(s.CapBnd!)).toBe(DEFAULT_SET);
    expect(capBits(s.CapEff!)).toBe(DEFAULT_SET);
    expect(capBits(s.CapPrm!)).toBe(DEFAULT_SET);
    expect(capBits(s.CapInh!)).toBe(0n);
    expect(capBits(s.CapAmb!)).toBe(0n);
    for (const set of ['CapInh', 'CapPrm', 'CapEff', 'CapBnd', 'CapAmb']) {
      for (const cap of FORBIDDEN) {
        expect((capBits(s[set]!) >> BigInt(CAP[cap])) & 1n, `${set} ${cap}`).toBe(0n);
      }
    }
    expect(s.NoNewPrivs).toBe('1');
  });

  describe('a host process', () => {
    let victim: BgProc;
    beforeAll(async () => {
      victim = sb.spawnOnHost(['sleep', '600']);
    });
    afterAll(async () => {
      victim.child.kill('SIGKILL');
      await victim.exited;
    });

    it('is not in the cell’s PID namespace: no ptrace, no pidfd_getfd, no /proc entry, no kill', async () => {
      const rs = await escape('ptrace', [String(victim.pid)]);
      expect(byName(rs, 'ptrace')).toMatchObject({ ok: false, errno: 'ESRCH' });
      expect(byName(rs, 'pidfd_getfd')).toMatchObject({ ok: false, errno: 'ESRCH' });
      expect(byName(rs, 'proc_root')).toMatchObject({ ok: false, errno: 'ENOENT' });
      expect(byName(rs, 'proc_environ')).toMatchObject({ ok: false, errno: 'ENOENT' });
      expect(byName(rs, 'proc_entry')).toMatchObject({ ok: false, errno: 'ENOENT' });
      // Root with CAP_KILL could signal every host process before.
      expect(byName(rs, 'kill')).toMatchObject({ ok: false, errno: 'ESRCH' });
      expect(victim.child.exitCode).toBeNull();
      expect(victim.child.signalCode).toBeNull();
    });

    it('the cell’s /proc shows its own PID namespace only: tini as pid 1, and the command', async () => {
      const [p] = (await escape('pids')) as unknown as Array<{
        value: number[];
        me: number;
        init: string;
        nspid: string[];
        ns: string;
      }>;
      expect(p!.init).toBe('tini');
      expect(p!.value).toEqual([1, p!.me]);
      // A /proc of the namespace numbers pids from it down.
      expect(p!.nspid).toEqual([String(p!.me)]);
      expect(p!.ns).not.toBe(fs.readlinkSync('/proc/self/ns/pid'));
      expect(p!.value).not.toContain(victim.pid);
    });
  });

  it('its own init, run as root, is out of reach of a --user command', async () => {
    const rs = await escape('ptrace', ['1'], ['--user', 'nobody']);
    expect(byName(rs, 'ptrace')).toMatchObject({ ok: false, errno: 'EPERM' });
    expect(byName(rs, 'pidfd_getfd')).toMatchObject({ ok: false, errno: 'EPERM' });
    expect(byName(rs, 'proc_root')).toMatchObject({ ok: false, errno: 'EACCES' });
    expect(byName(rs, 'proc_environ')).toMatchObject({ ok: false, errno: 'EACCES' });
    expect(byName(rs, 'kill')).toMatchObject({ ok: false, errno: 'EPERM' });
  });

  // Two root cells have the same uid and capabilities: only their PID
  // namespaces keep one from taking the other's sockets, and so addresses.
  it('two root cells: neither can take the other’s listening socket, nor ptrace it', async () => {
    const victim = sb.spawnOnHost([
      process.execPath,
      CLI,
      '--pin-dir',
      sb.pinDir,
      'exec',
      '--name',
      'victim',
      V4(6),
      '--',
      python(),
      '-c',
      'import json, os, socket, sys\n' +
        's = socket.socket(); s.bind(("0.0.0.0", 8080)); s.listen()\n' +
        'print(json.dumps({"fd": s.fileno(), "addr": s.getsockname()[0]}), flush=True)\n' +
        'sys.stdin.read()',
    ]);
    try {
      const v = await victim.waitFor((l) => typeof l.fd === 'number');
      expect(v.addr).toBe(V4(6));
      // Its pid as the host sees it (and as a cell without a PID namespace would).
      const hostPid = fs
        .readFileSync(path.join(sb.root, 'victim', 'cgroup.procs'), 'utf8')
        .split('\n')
        .filter(Boolean)
        .find((p) => fs.readFileSync(`/proc/${p}/comm`, 'utf8').startsWith('python'));
      expect(hostPid).toBeDefined();
      for (const user of [[], ['--user', '4002:4002']]) {
        const rs = await escape('getfd', [hostPid!, String(v.fd)], user);
        expect(byName(rs, 'pidfd_getfd'), `${user}`).toMatchObject({ ok: false, errno: 'ESRCH' });
        const pt = await escape('ptrace', [hostPid!], user);
        expect(byName(pt, 'ptrace'), `${user}`).toMatchObject({ ok: false, errno: 'ESRCH' });
        // Nor through any process it can see.
        const [st] = await escape('steal', [], user);
        expect(st!.value, `${user}`).toEqual([]);
      }
    } finally {
      victim.child.stdin!.end();
      await victim.exited;
    }
  });

  it('cannot leave its cell through cgroup.procs: read-only, and its namespace is rooted at the cell', async () => {
    const free = sb.cg('free'); // below the root but in no cell: "host"
    const rs = await escape('cgroup', [sb.cgroup2, free]);
    expect(byName(rs, 'self').value).toContain('0::/');
    expect(byName(rs, 'own_root_procs')).toMatchObject({ ok: false, errno: 'EROFS' });
    // The cell's own view has no path to any other cgroup at all.
    expect(byName(rs, 'host_path_procs')).toMatchObject({ ok: false, errno: 'ENOENT' });
    // pid 1 is the cell's own init: its root is the cell's view too.
    expect(byName(rs, 'via_proc1')).toMatchObject({ ok: false, errno: 'ENOENT' });
    expect(byName(rs, 'mkdir')).toMatchObject({ ok: false, errno: 'EROFS' });
    // The mount it sees is the cell's own cgroup...
    expect(byName(rs, 'own_procs_lists_me')).toMatchObject({ ok: true, value: true });
    // ...and after every attempt it is still confined to the cell.
    expect(byName(rs, 'still_in_cell'), JSON.stringify(rs)).toMatchObject({
      ok: true,
      value: CELL,
    });
    expect(fs.readFileSync(path.join(free, 'cgroup.procs'), 'utf8')).toBe('');
  });

  it('cannot open the pinned maps: no bpffs is mounted', async () => {
    const pinned = fs.readdirSync(sb.pinDir).map((f) => path.join(sb.pinDir, f));
    expect(pinned.length).toBeGreaterThan(0);
    const rs = await escape('bpffs', [pinned[0]!]);
    expect(byName(rs, 'mounts')).toMatchObject({ ok: true, value: [] });
    expect(byName(rs, `open ${pinned[0]}`)).toMatchObject({ ok: false, errno: 'ENOENT' });
    expect(byName(rs, `open /proc/1/root${pinned[0]}`)).toMatchObject({
      ok: false,
      errno: 'ENOENT',
    });
  });

  it('its mount table: nosuid everywhere, no cgroup v1, sysfs and /proc/sys read-only', async () => {
    const [m] = await escape('mounts');
    const rows = m!.value as Array<{ at: string; opts: string[]; type: string }>;
    // A mount hidden under a later one at the same path is out of reach.
    const top = new Map(rows.map((r) => [r.at, r]));
    for (const r of top.values()) expect(r.opts, r.at).toContain('nosuid');
    expect(rows.filter((r) => r.type === 'cgroup')).toEqual([]);
    expect(rows.filter((r) => r.type === 'bpf')).toEqual([]);
    for (const r of rows.filter((r) => ['sysfs', 'cgroup2'].includes(r.type))) {
      expect(r.opts, r.at).toContain('ro');
    }
    for (const at of ['/proc/sys', '/proc/irq', '/proc/bus', '/proc/fs']) {
      if (fs.existsSync(at)) expect(top.get(at)?.opts, at).toContain('ro');
    }
  });

  it('the host keeps its own mounts: nothing propagates out of the private namespace', () => {
    const mine = fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n');
    const cg2 = mine.find((l) => / - cgroup2 /.test(l))!;
    expect(cg2.split(' ')[5]!.split(',')).toContain('rw');
    expect(mine.some((l) => / - bpf /.test(l))).toBe(true);
    expect(fs.existsSync(sb.pinDir)).toBe(true);
  });

  it('cannot change the shared stack through /proc/sys (root without CAP_NET_ADMIN could)', async () => {
    const range = async () =>
      (await sb.onHost(['cat', '/proc/sys/net/ipv4/ping_group_range'])).stdout.trim().split(/\s+/);
    const before = await range();
    const rs = await escape('sysctl', [before.join(' ') === '1 0' ? '0 2147483647' : '1 0']);
    expect(byName(rs, 'write')).toMatchObject({ ok: false, errno: 'EROFS' });
    expect(byName(rs, 'read')).toMatchObject({ ok: true, value: before });
    expect(await range()).toEqual(before);
  });

  it('a read-only mount stays read-only (the nosuid remount keeps every other flag)', async () => {
    const ro = path.join(tmp, 'ro');
    fs.mkdirSync(ro);
    mustSync(['mount', '-t', 'tmpfs', '-o', 'ro,size=64k', 'l3t-ro', ro]);
    const rs = await escape('write', [path.join(ro, 'f')]);
    expect(byName(rs, 'write')).toMatchObject({ ok: false, errno: 'EROFS' });
  });

  it('--user nobody runs as uid 65534 with no capabilities; --user nobody:nogroup too', async () => {
    for (const user of ['nobody', 'nobody:nogroup', '65534']) {
      const [s] = (await escape('status', [], ['--user', user])) as unknown as Array<
        Record<string, string>
      >;
      expect(s!.Uid!.split('\t'), user).toEqual(['65534', '65534', '65534', '65534']);
      expect(s!.Gid!.split('\t'), user).toEqual(['65534', '65534', '65534', '65534']);
      expect(s!.Groups!.split(' ').filter(Boolean), user).toEqual(['65534']);
      for (const set of ['CapInh', 'CapPrm', 'CapEff', 'CapAmb']) {
        expect(capBits(s![set]!), `${user} ${set}`).toBe(0n);
      }
      expect(capBits(s!.CapBnd!)).toBe(DEFAULT_SET);
    }
    // A uid with no passwd entry gets no supplementary groups.
    const [s] = (await escape('status', [], ['--user', '4242:4343'])) as unknown as Array<
      Record<string, string>
    >;
    expect(s!.Uid!.split('\t')).toEqual(['4242', '4242', '4242', '4242']);
    expect(s!.Gid!.split('\t')).toEqual(['4343', '4343', '4343', '4343']);
    expect(s!.Groups).toBe('');
  });

  it('--user with an unknown user or group: usage error, nothing created, nothing run', async () => {
    const marker = path.join(tmp, 'ran');
    for (const user of ['no-such-user-l3', 'nobody:no-such-group-l3', '4242', '-x', 'a:']) {
      const r = await sb.cli(
        ['exec', '--name', 'u', '--user', user, addr(), '--', 'touch', marker],
        {
          json: true,
        },
      );
      expect(r.status, user).toBe(2);
      expect(r.json?.error?.code, user).toBe('EUSAGE');
    }
    expect(fs.existsSync(marker)).toBe(false);
    expect(fs.existsSync(path.join(sb.root, 'u'))).toBe(false);
  });

  describe('a set-uid or file-capability binary', () => {
    let suid: string;
    let fcap: string;
    beforeAll(() => {
      const src = path.join(tmp, 'who.c');
      fs.writeFileSync(
        src,
        [
          '#include <stdio.h>',
          '#include <string.h>',
          '#include <unistd.h>',
          'int main(void) {',
          '  char line[256];',
          '  FILE *f = fopen("/proc/self/status", "r");',
          '  printf("{\\"euid\\": %d", (int)geteuid());',
          '  while (f && fgets(line, sizeof line, f))',
          '    if (!strncmp(line, "CapEff:", 7) || !strncmp(line, "CapPrm:", 7)) {',
          '      line[6] = 0; line[strcspn(line + 8, "\\n") + 8] = 0;',
          '      printf(", \\"%s\\": \\"%s\\"", line, line + 8);',
          '    }',
          '  printf("}\\n");',
          '  return 0;',
          '}',
        ].join('\n'),
      );
      suid = path.join(tmp, 'who-suid');
      fcap = path.join(tmp, 'who-fcap');
      mustSync(['gcc', '-O0', '-o', suid, src]);
      fs.copyFileSync(suid, fcap);
      fs.chmodSync(suid, 0o4755);
      fs.chmodSync(fcap, 0o755);
      mustSync(['setcap', 'cap_net_raw,cap_sys_admin,cap_sys_ptrace+ep', fcap]);
      // Outside exec they do what they say.
      expect(
        JSON.parse(mustSync(['setpriv', '--reuid=65534', '--clear-groups', '--', suid])).euid,
      ).toBe(0);
    });

    const who = async (bin: string, execOpts: string[]) => {
      const r = await sb.cli(['exec', ...execOpts, addr(), '--', bin]);
      expect(r.status, r.stderr).toBe(0);
      return JSON.parse(r.stdout.trim()) as { euid: number; CapEff: string; CapPrm: string };
    };

    it('as nobody: the set-uid root binary runs as nobody, the file-cap one with no capabilities', async () => {
      expect(await who(suid, ['--user', 'nobody'])).toEqual({
        euid: 65534,
        CapEff: '0000000000000000',
        CapPrm: '0000000000000000',
      });
      expect(await who(fcap, ['--user', 'nobody'])).toEqual({
        euid: 65534,
        CapEff: '0000000000000000',
        CapPrm: '0000000000000000',
      });
    });

    it('as root: the file-cap binary runs, without the capabilities it carries', async () => {
      const w = await who(fcap, []);
      expect(capBits(w.CapEff)).toBe(DEFAULT_SET);
      expect(capBits(w.CapPrm)).toBe(DEFAULT_SET);
    });
  });

  it('a terminal’s ^C reaches the command exactly once', async () => {
    const cmd = [
      'nsenter',
      `--net=${sb.nsPath}`,
      '--',
      process.execPath,
      CLI,
      '--pin-dir',
      sb.pinDir,
      'exec',
      addr(),
      '--',
      python(),
      '-c',
      ESCAPE,
      'sigint',
    ];
    const r = await run([python(), '-c', PTY, ...cmd]);
    const res = JSON.parse(r.stdout) as { out: string; status: number };
    expect(res.out, r.stderr).toContain('GOT 1');
    expect(res.out).not.toContain('GOT 2');
    expect(res.out).toContain('TERM after 1');
    expect(res.status).toBe(0);
  });

  it('a SIGINT sent to l3iso without a terminal is passed on, once', async () => {
    const p = sb.spawnOnHost([
      process.execPath,
      CLI,
      '--pin-dir',
      sb.pinDir,
      'exec',
      addr(),
      '--',
      python(),
      '-c',
      ESCAPE,
      'sigint',
    ]);
    await waitForText(p, 'READY');
    p.child.kill('SIGINT'); // nsenter exec'd node: this is l3iso
    await waitForText(p, 'GOT 1');
    p.child.kill('SIGTERM');
    const st = await p.exited;
    expect(p.stdout).toContain('TERM after 1');
    expect(st.status).toBe(0);
  });

  it('exit status passes through, a signal death as 128+N', async () => {
    const r = await sb.cli(['exec', addr(), '--', 'sh', '-c', 'kill -TERM $$']);
    expect(r.status).toBe(143);
    const s = await sb.cli(['exec', addr(), '--', 'sh', '-c', 'exit 42']);
    expect(s.status).toBe(42);
  });

  it('fails closed: when a step of the chain fails, the command does not run', async () => {
    // A PATH with the chain's tools but one: the chain stops at the step
    // that needs it, with 125 and the reason.
    const tools = ['unshare', 'setpriv', 'tini', 'mount', 'umount', 'sed', 'cat', 'grep'];
    const marker = path.join(tmp, 'ran-without-confinement');
    for (const [missing, message] of [
      ['unshare', /l3iso exec: unshare not found; the command was not run/],
      ['mount', /l3iso exec: cannot mount \/proc for the PID namespace; the command was not run/],
      ['setpriv', /l3iso exec: setpriv not found; the command was not run/],
      ['tini', /l3iso exec: tini not found .*; the command was not run/],
    ] as const) {
      const bin = path.join(tmp, `bin-no-${missing}`);
      fs.mkdirSync(bin);
      for (const t of tools.filter((t) => t !== missing)) {
        fs.symlinkSync(mustSync(['sh', '-c', `command -v ${t}`]).trim(), path.join(bin, t));
      }
      const r = await sb.cli(['exec', '--name', 'noconf', addr(), '--', '/usr/bin/touch', marker], {
        wrap: ['env', `PATH=${bin}`],
      });
      expect(r.status, `${missing}: ${r.stderr}`).toBe(125);
      expect(r.stderr).toMatch(message);
      expect(fs.existsSync(marker)).toBe(false);
      expect(fs.existsSync(path.join(sb.root, 'noconf'))).toBe(false);
    }
  });

  it('SIGTERM and SIGHUP sent to l3iso reach the command; one that does not catch them dies, 128+N', async () => {
    for (const [sig, status] of [
      ['SIGTERM', 143],
      ['SIGHUP', 129],
    ] as const) {
      const p = sb.spawnOnHost([
        process.execPath,
        CLI,
        '--pin-dir',
        sb.pinDir,
        'exec',
        addr(),
        '--',
        'sh',
        '-c',
        'echo READY; exec sleep 600',
      ]);
      await waitForText(p, 'READY');
      p.child.kill(sig);
      const st = await p.exited;
      expect(st.status, `${sig}: ${p.stderr}`).toBe(status);
    }
  });

  it('its init reaps orphans: a process whose parent died leaves no zombie', async () => {
    // The grandchild outlives its parent, so the cell's pid 1 adopts it;
    // once its end of the pipe closes it is exiting, and unless pid 1
    // reaps it, it stays in /proc as a zombie.
    const code = String.raw`
import os, time
r, w = os.pipe()
if os.fork() == 0:
    if os.fork() == 0:
        os.close(r)
        time.sleep(0.2)
        os._exit(0)
    os._exit(0)
os.wait()
os.close(w)
os.read(r, 1)
others = []
for _ in range(200):
    others = [e for e in os.listdir("/proc") if e.isdigit() and int(e) not in (1, os.getpid())]
    if not others:
        break
    time.sleep(0.05)
print("left", others)
`;
    const r = await sb.cli(['exec', addr(), '--', python(), '-c', code]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe('left []');
  });

  it('--keep keeps the cell, not what the command left running: its PID namespace ends with it', async () => {
    const r = await sb.cli([
      'exec',
      '--name',
      'kept',
      '--keep',
      addr(),
      '--',
      'sh',
      '-c',
      'sleep 600 & echo $!',
    ]);
    expect(r.status, r.stderr).toBe(0);
    try {
      expect(fs.readFileSync(path.join(sb.root, 'kept', 'cgroup.procs'), 'utf8')).toBe('');
      const kept = (await sb.list()).find((c: { cell: string }) => c.cell === 'kept');
      expect(kept).toMatchObject({ addresses: [CELL] });
    } finally {
      await sb.cliOk(['release', 'kept']);
    }
  });
});

async function waitForText(p: BgProc, text: string): Promise<void> {
  for (let i = 0; i < 200 && !p.stdout.includes(text) && p.child.exitCode === null; i++) {
    await new Promise((r) => setTimeout(r, 50));
  }
  expect(p.stdout, p.stderr).toContain(text);
}

// Debian's ping carries cap_net_raw=ep. Outside the bounding set, a file
// capability with the effective bit makes execve fail with EPERM; on a
// nosuid mount file capabilities are ignored, so exec's ping runs without
// them and falls back to an ICMP ping socket. Those need the command's gid
// in net.ipv4.ping_group_range, which exec leaves as the host has it (it is
// the netns's setting, the host's included).
describe('exec: ping', () => {
  let sb: Sandbox;
  const HOST = V4(7);
  const sysctl = (range: string) =>
    sb.onHost(['sysctl', '-qw', `net.ipv4.ping_group_range=${range}`]);
  beforeAll(async () => {
    sb = await createSandbox();
    await sb.up();
  });
  afterAll(async () => {
    await sb?.destroy();
  });

  it('runs, as root and as nobody, through an ICMP ping socket', async () => {
    expect((await sysctl('0 2147483647')).status).toBe(0);
    for (const user of [[], ['--user', 'nobody']]) {
      for (const dst of [['-I', CELL, HOST], [CELL]]) {
        const r = await sb.cli([
          'exec',
          ...user,
          CELL,
          '--',
          'ping',
          '-n',
          '-c',
          '1',
          '-W',
          '5',
          ...dst,
        ]);
        expect(r.status, `${user} ${dst}: ${r.stderr}`).toBe(0);
        expect(r.stdout).toMatch(/1 received/);
      }
    }
  });

  it('with the gid outside ping_group_range, ping itself says it cannot open a socket', async () => {
    expect((await sysctl('1 0')).status).toBe(0);
    try {
      const r = await sb.cli(['exec', CELL, '--', 'ping', '-n', '-c', '1', '-W', '1', CELL]);
      expect(r.status).toBe(2);
      expect(r.stderr).toMatch(/ping: socket: Operation not permitted/);
      expect(r.stderr).not.toMatch(/failed to execute/);
    } finally {
      await sysctl('0 2147483647');
    }
  });
});
