/**
 * The runtime side of the threat model, as `exec` provides it: what a
 * process needs to be denied so that the BPF hooks are the only way it has
 * to the network (README, Threat model).
 *
 * The command is started through a chain in which every link but one execs
 * the next:
 *   sh       LAUNCH_SCRIPT: checks that unshare is there
 *   unshare  --pid --fork: stays outside as the process l3iso spawned, and
 *            exits with the status of the namespace's pid 1 (its child)
 *   sh       JOIN_SCRIPT, pid 1 of the new PID namespace: joins the cell's
 *            cgroup (before anything else can make a socket)
 *   unshare  new mount and cgroup namespaces: the cgroup namespace is
 *            created after the join, so it is rooted at the cell
 *   sh       CONFINE_SCRIPT: a /proc of the new PID namespace, then
 *            rearranges the private mount table
 *   setpriv  capability sets, no_new_privs
 *   tini     pid 1 from here on, with the command's capabilities: forwards
 *            signals to the command's process group, reaps orphans and
 *            exits with the command's status (128+N for signal N)
 *   setpriv  (tini's child) with --user only: the user and groups
 * and then the command. So the forking unshare, which has
 * every capability, stays in the caller's cgroup, not in the cell; and the
 * only processes a cell can see or signal are its own.
 * Each link fails closed: when a step fails, the chain stops with an error
 * on stderr and the command does not run.
 */

/**
 * runc's (and docker's) default capability set without CAP_NET_RAW: with
 * NET_RAW a cell could open AF_PACKET sockets, which no cgroup hook sees.
 */
export const EXEC_CAPABILITIES = [
  'chown',
  'dac_override',
  'fsetid',
  'fowner',
  'mknod',
  'setgid',
  'setuid',
  'setfcap',
  'setpcap',
  'net_bind_service',
  'sys_chroot',
  'kill',
  'audit_write',
] as const;

/** Exit status of the chain when confinement itself failed (as docker's 125). */
export const EXIT_CONFINE_FAILED = 125;

/** Exits the chain with the status of a failed confinement, before the command ran. */
const FAIL = `fail() { echo "l3iso exec: $*; the command was not run" >&2; exit ${EXIT_CONFINE_FAILED}; }`;

/** sh -c script: $1 JOIN_SCRIPT, then its arguments. --kill-child: if the
 * forking unshare dies, so does the namespace (the parent-death signal it
 * sets survives every exec up to tini, none of which changes credentials). */
export const LAUNCH_SCRIPT = [
  FAIL,
  'command -v unshare >/dev/null || fail "unshare not found"',
  'join=$1',
  'shift',
  'exec unshare --pid --fork --kill-child -- /bin/sh -c "$join" l3iso-join "$@"',
].join('\n');

/** sh -c script: $1 the cell's cgroup.procs, $2 the confine script, then
 * setpriv's argv. */
export const JOIN_SCRIPT = [
  FAIL,
  'procs=$1 confine=$2',
  'shift 2',
  // $$ is 1 here: cgroup.procs reads pids in the writer's namespace.
  'echo $$ >"$procs" || fail "cannot join the cell\'s cgroup"',
  'exec unshare --mount --cgroup --propagation private -- /bin/sh -c "$confine" l3iso-confine "$@"',
].join('\n');

/** The cell's pid 1: signals go to the command's whole process group. */
export const INIT_ARGV = ['tini', '-g', '--'] as const;

/**
 * Runs in the new mount namespace (propagation private, so nothing reaches
 * the host's table) as root with every capability, then execs setpriv with
 * "$@". /proc/self/mountinfo is read rather than /proc/mounts because it has
 * the per-mount flags (field 6), which is where ro and nosuid live.
 *   - /proc is the new PID namespace's: the host's is detached with
 *     everything mounted below it (binfmt_misc, say), so that the cell
 *     sees no other process; the steps below then read that one;
 *   - every bpffs is unmounted: the pinned maps are the engine's state;
 *   - every cgroup2 mount is replaced by a read-only one, which, mounted
 *     inside the cgroup namespace, shows only the cell's subtree; cgroup v1
 *     hierarchies are unmounted (the cell's membership is v2's);
 *   - sysfs, /proc/sys and the other /proc files docker makes read-only
 *     become read-only: root without CAP_NET_ADMIN may still write some
 *     net sysctls of the shared netns (net.ipv4.ping_group_range is one);
 *   - every mount becomes nosuid, so set-uid bits and file capabilities are
 *     ignored: a binary gains nothing, and one whose file capabilities lie
 *     outside the bounding set still runs (ping, with cap_net_raw=ep, falls
 *     back to an ICMP ping socket instead of failing to execute).
 * Then it checks the result rather than trusting the steps.
 */
export const CONFINE_SCRIPT = String.raw`set -euf
${FAIL}
# Sets m to mountinfo's octal-escaped mount point $1, decoded (a fork only
# for the rare escaped one).
unescape() {
  m=$1
  case $1 in
  *\\*) m=$(printf '%b' "$(printf '%s' "$1" | sed 's/\\\([0-7][0-7][0-7]\)/\\0\1/g')") ;;
  esac
}
# Sets t to the filesystem type: the field after the "-" that ends the
# optional fields.
fstype() {
  while [ $# -gt 1 ] && [ "$1" != - ]; do shift; done
  t=''
  if [ $# -gt 1 ]; then t=$2; fi
}
# each PRED ACTION: ACTION FSTYPE MOUNTPOINT for every mount PRED FSTYPE OPTIONS accepts,
# over a snapshot of the table (ACTION may change it).
each() {
  info=$(cat /proc/self/mountinfo)
  while read -r _ _ _ _ mnt opts rest; do
    fstype $rest
    if "$1" "$t" "$opts"; then
      unescape "$mnt"
      "$2" "$t" "$m"
    fi
  done <<EOF
$info
EOF
}
pick() { [ -n "$pm" ] || { pt=$1 pm=$2; }; }
any() {
  pt='' pm=''
  each "$1" pick
  [ -n "$pm" ]
}
is_bpf() { [ "$1" = bpf ]; }
is_rw() { case ,$2, in *,ro,*) return 1 ;; esac; }
is_rw_cgroup() { case $1 in cgroup | cgroup2) is_rw "$@" ;; *) return 1 ;; esac; }
is_rw_sysfs() { [ "$1" = sysfs ] && is_rw "$@"; }
lacks_nosuid() { case ,$2, in *,nosuid,*) return 1 ;; esac; }
make_ro() { mount -o remount,bind,ro -- "$2" || fail "cannot make $2 read-only"; }
make_nosuid() { mount -o remount,bind,nosuid -- "$2" || fail "cannot make $2 nosuid"; }
umount -l /proc || fail "cannot unmount the host's /proc"
mount -t proc -o nosuid,nodev,noexec proc /proc || fail "cannot mount /proc for the PID namespace"
read -r me _ </proc/self/stat || fail "cannot read /proc"
[ "$me" = 1 ] || fail "/proc is not the PID namespace's"
n=0
step() { n=$((n + 1)); [ "$n" -le 4096 ] || fail "the mount table does not settle"; }
while any is_bpf; do
  umount -l -- "$pm" || fail "cannot unmount the bpffs at $pm"
  step
done
while any is_rw_cgroup; do
  umount -l -- "$pm" || fail "cannot unmount $pm"
  if [ "$pt" = cgroup2 ]; then
    mount -t cgroup2 -o ro,nosuid,nodev,noexec cgroup2 "$pm" || fail "cannot mount cgroup2 read-only at $pm"
  fi
  step
done
each is_rw_sysfs make_ro
for p in /proc/sys /proc/sysrq-trigger /proc/irq /proc/bus /proc/fs; do
  [ -e "$p" ] || continue
  mount --bind -- "$p" "$p" || fail "cannot bind $p"
  make_ro proc "$p"
done
each lacks_nosuid make_nosuid
! any is_bpf || fail "a bpffs is still mounted at $pm"
! any is_rw_cgroup || fail "the cgroup mount at $pm is still writable"
! any is_rw_sysfs || fail "the sysfs at $pm is still writable"
grep -qx '0::/' /proc/self/cgroup || fail "the cgroup namespace is not rooted at the cell"
command -v setpriv >/dev/null || fail "setpriv not found"
command -v ${INIT_ARGV[0]} >/dev/null || fail "${INIT_ARGV[0]} not found (Debian package tini)"
exec setpriv "$@"
`;

/** Who the command runs as, numerically, resolved before anything is created. */
export interface ExecUser {
  uid: number;
  gid: number;
  /** Take the supplementary groups from the group database (the user has a
   * passwd entry); otherwise there are none. */
  initGroups: boolean;
}

/**
 * What CONFINE_SCRIPT runs as `setpriv ARGV`: setpriv takes the capability
 * sets and sets no_new_privs, then tini becomes pid 1 (root, with the
 * command's capabilities) and, with a user, a second setpriv changes only
 * the user and groups before it execs the command: like the single setpriv
 * before the PID namespace, it still looks the command up as root, so a
 * command the user may run but not find (in a directory only root can
 * search) runs as it did.
 */
export function chainArgv(user: ExecUser | undefined, argv: readonly string[]): string[] {
  const caps = ['-all', ...EXEC_CAPABILITIES.map((c) => `+${c}`)].join(',');
  const out = [
    '--no-new-privs',
    `--bounding-set=${caps}`,
    '--inh-caps=-all',
    '--ambient-caps=-all',
    '--',
    ...INIT_ARGV,
  ];
  if (user) {
    out.push(
      'setpriv',
      `--reuid=${user.uid}`,
      `--regid=${user.gid}`,
      user.initGroups ? '--init-groups' : '--clear-groups',
      '--',
    );
  }
  return [...out, ...argv];
}
