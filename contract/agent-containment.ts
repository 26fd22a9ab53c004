import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import {
  accessSync,
  closeSync,
  constants,
  mkdirSync,
  openSync,
  readSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  rmdirSync,
  writeFileSync,
} from 'node:fs';
import { createServer } from 'node:net';
import { join, sep } from 'node:path';

/**
 * Nothing an agent starts outlives its job. Every process of a slot's agent is found and killed
 * before the slot's next job (and when the agent exits, and when its runner stops or dies):
 *
 * - `cgroup` (Linux with a writable cgroup v2 hierarchy): the agent's wrapper moves itself into
 *   the slot's own cgroup before it starts anything, so every descendant — `setsid`, double
 *   forks, a cleared environment — is a member, and `cgroup.kill` ends them all at once.
 * - `tracking` (no writable cgroup: inside a container, macOS, a cgroup v1 host): processes that
 *   carry the slot's marker in their environment, processes without a terminal whose working
 *   directory is inside the slot's worktree, and processes listening on the slot's ports.
 *
 * - `uid` (the Docker runtime: the agent runs under a uid of its own, which nothing else in the
 *   container uses): every process of that uid, whatever it did to its environment, directory
 *   or session. A process cannot leave its uid without capabilities, and it has none.
 *
 * Every mode also runs the tracking scan (a root agent can leave its cgroup). Shared by the
 * runner (before and after each job) and the supervisor's process runtime (a dead runner).
 */
export type ContainmentMode = 'cgroup' | 'tracking' | 'uid';

export interface ContainmentSpec {
  /** Identifies the slot across runner restarts: queue name and slot id. */
  slotKey: string;
  worktreePath: string;
  /** The slot's ports (its block and named ports): listeners on them are killed. */
  ports: readonly number[];
  /** The agent's own uid (used by nothing else here): every process of it is the agent's. */
  agentUid?: number;
}

export interface SweepReport {
  /** Pids killed, with why each one was found. */
  killed: Array<{
    pid: number;
    found: 'cgroup' | 'uid' | 'marker' | 'cwd' | 'port';
  }>;
  /** Slot ports still listened on after the sweep (held by a process we may not kill). */
  busyPorts: number[];
}

/** The environment variable that marks every process an agent starts (inherited). */
export const SLOT_MARKER_VAR = 'SUPERVISOR_SLOT_MARKER';
/** Read (and unset) by the agent wrapper, which moves itself into this cgroup first. */
export const AGENT_CGROUP_VAR = 'SUPERVISOR_AGENT_CGROUP';

/**
 * The first lines of a shell that runs agent-written code (the agent's wrapper, `land.check`):
 * into the slot's cgroup ($SUPERVISOR_AGENT_CGROUP) before anything forks, so every descendant
 * inherits it; exit 125 when that fails.
 */
export const ENTER_CGROUP_SH = [
  'if [ -n "${SUPERVISOR_AGENT_CGROUP:-}" ]; then',
  '  echo $$ > "$SUPERVISOR_AGENT_CGROUP/cgroup.procs" || { echo "supervisor: cannot enter the cgroup $SUPERVISOR_AGENT_CGROUP" >&2; exit 125; }',
  'fi',
  'unset SUPERVISOR_AGENT_CGROUP',
];

/**
 * Contains one run of agent-written code in a slot: sweeps what an earlier run left, gives the
 * run its marker (and cgroup) through `env()`, and `end()` kills whatever it left running.
 */
export class SlotRun {
  readonly cgroup: string | undefined;

  constructor(readonly spec: ContainmentSpec) {
    this.cgroup = prepareSlotCgroup(spec.slotKey);
  }

  /** Variables for the run: the inherited marker, and the cgroup its shell enters first. */
  env(): Record<string, string> {
    return {
      [SLOT_MARKER_VAR]: slotMarkerFor(this.spec.slotKey),
      ...(this.cgroup ? { [AGENT_CGROUP_VAR]: this.cgroup } : {}),
    };
  }

  /** Kills every process of the slot (before a run: an earlier one's; after: this one's). */
  sweep(): Promise<SweepReport> {
    return sweepSlot(this.spec, [this.cgroup]);
  }

  async end(): Promise<SweepReport> {
    const report = await this.sweep();
    removeSlotCgroup(this.cgroup);
    return report;
  }
}

export function slotMarkerFor(slotKey: string): string {
  return createHash('sha256')
    .update(`agent-supervisor slot ${slotKey}`)
    .digest('hex')
    .slice(0, 32);
}

/** The mount point of the cgroup v2 hierarchy and this process's cgroup in it. */
function ownCgroup2(): string | undefined {
  let mount: string | undefined;
  try {
    for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split(
      '\n',
    )) {
      const [left, right] = line.split(' - ');
      if (!left || !right || !right.startsWith('cgroup2 ')) continue;
      mount = left.split(' ')[4];
      if (mount) break;
    }
    const own = /^0::(.*)$/m.exec(
      readFileSync('/proc/self/cgroup', 'utf8'),
    )?.[1];
    if (!mount || own === undefined) return undefined;
    return join(mount, own.replace(/ \(deleted\)$/, ''));
  } catch {
    return undefined;
  }
}

/**
 * Creates (or finds) the slot's cgroup as a child of this process's own cgroup; undefined when
 * the hierarchy is not writable here.
 */
export function prepareSlotCgroup(slotKey: string): string | undefined {
  if (process.env.SUPERVISOR_CONTAINMENT === 'tracking') return undefined;
  const parent = ownCgroup2();
  if (!parent) return undefined;
  const dir = join(parent, `agent-supervisor-${slotMarkerFor(slotKey)}`);
  try {
    mkdirSync(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') return undefined;
  }
  try {
    accessSync(join(dir, 'cgroup.procs'), constants.W_OK);
    return dir;
  } catch {
    return undefined;
  }
}

function cgroupPids(dir: string): number[] {
  try {
    return readFileSync(join(dir, 'cgroup.procs'), 'utf8')
      .split('\n')
      .filter(Boolean)
      .map(Number);
  } catch {
    return [];
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Kills every member of the cgroup and waits until it is empty (about 5 s at most). */
async function killCgroup(dir: string): Promise<number[]> {
  const seen = new Set<number>();
  for (let i = 0; i < 100; i++) {
    const pids = cgroupPids(dir);
    if (!pids.length) break;
    for (const p of pids) seen.add(p);
    try {
      writeFileSync(join(dir, 'cgroup.kill'), '1');
    } catch {
      // Kernels before 5.14 have no cgroup.kill: freeze, kill each member, thaw.
      try {
        writeFileSync(join(dir, 'cgroup.freeze'), '1');
      } catch {
        /* no freezer either: plain kills, repeated */
      }
      for (const p of pids) killPid(p);
      try {
        writeFileSync(join(dir, 'cgroup.freeze'), '0');
      } catch {
        /* see above */
      }
    }
    await sleep(i < 10 ? 10 : 50);
  }
  return [...seen];
}

function killPid(pid: number): boolean {
  try {
    process.kill(pid, 'SIGKILL');
    return true;
  } catch {
    return false;
  }
}

/** This process and its ancestors: never killed by a sweep. */
function protectedPids(): Set<number> {
  const out = new Set<number>([process.pid]);
  let pid = process.ppid;
  for (let i = 0; i < 64 && pid > 1; i++) {
    out.add(pid);
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      pid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    } catch {
      break;
    }
  }
  out.add(1);
  return out;
}

/** Listening TCP sockets (inode → port) on the given ports, from /proc/net. */
function listeningInodes(ports: ReadonlySet<number>): Map<string, number> {
  const out = new Map<string, number>();
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10 || f[3] !== '0A') continue;
      const port = parseInt(f[1]!.split(':')[1] ?? '', 16);
      if (ports.has(port)) out.set(f[9]!, port);
    }
  }
  return out;
}

/** Alive and not a zombie (a zombie holds no files, sockets or memory). */
function running(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !['Z', 'X'].includes(
      stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3),
    );
  } catch {
    return false;
  }
}

function hasTerminal(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Field 7 (tty_nr) counted from after the command name.
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[4]) !== 0;
  } catch {
    return false;
  }
}

interface Found {
  pid: number;
  found: 'uid' | 'marker' | 'cwd' | 'port';
}

/** The real uid of a process (/proc/<pid>/status is readable for every process). */
function realUid(pid: number): number | undefined {
  try {
    const m = /^Uid:\s+(\d+)/m.exec(
      readFileSync(`/proc/${pid}/status`, 'utf8'),
    );
    return m?.[1] !== undefined ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** Read buffer for environments (one pass reads every process's; no allocation per process). */
const ENV_BUF = Buffer.allocUnsafe(64 * 1024);

/** Whether /proc/<pid>/environ contains `needle` (false when it cannot be read). */
function environHas(pid: number, needle: Buffer): boolean {
  let fd: number;
  try {
    fd = openSync(`/proc/${pid}/environ`, 'r');
  } catch {
    return false; // not ours to read, or gone
  }
  try {
    // Read in chunks; the needle's length less one byte is carried over between them.
    let carry = 0;
    for (;;) {
      const n = readSync(fd, ENV_BUF, carry, ENV_BUF.length - carry, null);
      if (n <= 0) return false;
      const end = carry + n;
      if (ENV_BUF.subarray(0, end).includes(needle)) return true;
      carry = Math.min(needle.length - 1, end);
      ENV_BUF.copy(ENV_BUF, 0, end - carry, end);
    }
  } catch {
    return false;
  } finally {
    closeSync(fd);
  }
}

/**
 * One pass over /proc: processes that belong to the slot's agent by marker, cwd or port (the
 * port owners only when `ports`: something may hold a slot port).
 */
function scanProc(
  spec: ContainmentSpec,
  marker: string,
  ports: boolean,
): Found[] {
  const needle = Buffer.from(`${SLOT_MARKER_VAR}=${marker}\0`);
  const inodes = ports
    ? listeningInodes(new Set(spec.ports))
    : new Map<string, number>();
  const keep = protectedPids();
  const worktree = spec.worktreePath.replace(/\/+$/, '');
  const out: Found[] = [];
  for (const name of readdirSync('/proc')) {
    const pid = Number(name);
    if (!Number.isInteger(pid) || keep.has(pid)) continue;
    let found: Found['found'] | undefined;
    if (spec.agentUid !== undefined && realUid(pid) === spec.agentUid)
      found = 'uid';
    if (!found && environHas(pid, needle)) found = 'marker';
    if (!found) {
      try {
        const cwd = readlinkSync(`/proc/${pid}/cwd`);
        if (
          (cwd === worktree || cwd.startsWith(worktree + sep)) &&
          !hasTerminal(pid)
        )
          found = 'cwd';
      } catch {
        /* not ours to read, or gone */
      }
    }
    if (!found && inodes.size) {
      try {
        for (const fd of readdirSync(`/proc/${pid}/fd`)) {
          const m = /^socket:\[(\d+)\]$/.exec(
            readlinkSync(`/proc/${pid}/fd/${fd}`),
          );
          if (m && inodes.has(m[1]!)) {
            found = 'port';
            break;
          }
        }
      } catch {
        /* idem */
      }
    }
    if (found) out.push({ pid, found });
  }
  return out;
}

/** Without /proc (macOS): the marker through `ps` and listeners through `lsof`. */
function scanWithoutProc(spec: ContainmentSpec, marker: string): Found[] {
  const out: Found[] = [];
  const keep = protectedPids();
  try {
    const ps = execFileSync('ps', ['eww', '-ax', '-o', 'pid=,command='], {
      encoding: 'utf8',
      maxBuffer: 64 * 1024 * 1024,
    });
    for (const line of ps.split('\n')) {
      const m = /^\s*(\d+)\s/.exec(line);
      if (m && line.includes(`${SLOT_MARKER_VAR}=${marker}`)) {
        const pid = Number(m[1]);
        if (!keep.has(pid)) out.push({ pid, found: 'marker' });
      }
    }
  } catch {
    /* no ps */
  }
  for (const port of spec.ports) {
    try {
      const pids = execFileSync(
        'lsof',
        ['-t', '-nP', `-iTCP:${port}`, '-sTCP:LISTEN'],
        { encoding: 'utf8' },
      );
      for (const p of pids.split('\n').filter(Boolean).map(Number))
        if (!keep.has(p)) out.push({ pid: p, found: 'port' });
    } catch {
      /* none, or no lsof */
    }
  }
  return out;
}

function hasProc(): boolean {
  try {
    accessSync('/proc/self/environ', constants.R_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * Whether a TCP socket may hold one of `ports`: each is bound for a moment on 0.0.0.0 and on
 * :: (v6 only), and any refusal counts as held. A listener on any address of either family
 * refuses (Linux lets no bind overlap a listening socket), so "all free" is exact; "held" may
 * also be an outgoing connection's local port or a host without IPv6, and the caller then reads
 * /proc/net to find out. Binding 2 × 10 ports costs under 1 ms; reading /proc/net/tcp and tcp6
 * walks the kernel's whole connection table, ~3.5 ms each on a 24 GiB host even when they are
 * nearly empty, and a sweep read them twice.
 */
export async function portsMaybeHeld(
  ports: readonly number[],
): Promise<boolean> {
  const bindable = (port: number, host: string) =>
    new Promise<boolean>((resolve) => {
      const s = createServer();
      s.once('error', () => resolve(false));
      s.listen({ port, host, ipv6Only: host === '::', exclusive: true }, () =>
        s.close(() => resolve(true)),
      );
    });
  const free = await Promise.all(
    ports.flatMap((p) => [bindable(p, '0.0.0.0'), bindable(p, '::')]),
  );
  return free.includes(false);
}

/** The slot's ports that something listens on, from /proc/net (after a quick bind check). */
async function busyPorts(ports: readonly number[]): Promise<number[]> {
  if (!ports.length || !(await portsMaybeHeld(ports))) return [];
  return [...new Set(listeningInodes(new Set(ports)).values())].sort(
    (a, b) => a - b,
  );
}

export interface SweepOptions {
  /**
   * `false`: kill the cgroups' members and the listeners on the slot's ports, but skip the pass
   * over every process when no port is held. For a slot whose last run was already followed
   * by a full sweep (the runner's sweep before a job, after the previous job's exit sweep):
   * no process of the slot ran since, so only what that sweep could not see can be left, and
   * a pass now would see no more of it than the next exit sweep will. @defaultValue true
   */
  scan?: boolean;
}

/** Everything the slot's agents left behind, killed; the slot's ports checked. */
export async function sweepSlot(
  spec: ContainmentSpec,
  cgroups: readonly (string | undefined)[] = [],
  opts: SweepOptions = {},
): Promise<SweepReport> {
  const report: SweepReport = { killed: [], busyPorts: [] };
  for (const dir of new Set(cgroups.filter((c): c is string => !!c)))
    for (const pid of await killCgroup(dir))
      report.killed.push({ pid, found: 'cgroup' });
  const marker = slotMarkerFor(spec.slotKey);
  const proc = hasProc();
  // Listeners on the slot's ports are looked for (in /proc/net) only when a bind says so.
  const portsHeld =
    proc && spec.ports.length > 0 && (await portsMaybeHeld(spec.ports));
  if (opts.scan !== false || portsHeld || !proc) {
    // Repeated until a pass finds nothing: a process may fork while its parent is being killed.
    for (let pass = 0; pass < 20; pass++) {
      const found = proc
        ? scanProc(spec, marker, portsHeld || pass > 0)
        : scanWithoutProc(spec, marker);
      const fresh = found.filter((f) => killPid(f.pid));
      if (!fresh.length) break;
      report.killed.push(...fresh);
      await sleep(20);
    }
  }
  // SIGKILL is asynchronous: wait until each one is gone (or a zombie, which runs nothing).
  for (let i = 0; proc && i < 250; i++) {
    if (!report.killed.some((k) => running(k.pid))) break;
    await sleep(20);
  }
  // A killed listener's socket closes as the process is torn down: give that a moment. With
  // every port free before the sweep and nothing killed, nothing can be listening now.
  for (
    let i = 0;
    proc && (portsHeld || report.killed.length > 0) && i < 50;
    i++
  ) {
    report.busyPorts = await busyPorts(spec.ports);
    if (!report.busyPorts.length) break;
    await sleep(40);
  }
  return report;
}

/** Removes an empty slot cgroup (when the runner stops); a busy one is left alone. */
export function removeSlotCgroup(dir: string | undefined): void {
  if (!dir) return;
  try {
    rmdirSync(dir);
  } catch {
    /* busy or gone */
  }
}

/** The slot's ports from its environment: the block and every numeric `*_PORT` variable. */
export function slotPorts(env: Record<string, string>): number[] {
  const ports = new Set<number>();
  const lo = Number(env.PORT_BLOCK_START);
  const hi = Number(env.PORT_BLOCK_END);
  if (Number.isInteger(lo) && Number.isInteger(hi) && lo > 0 && hi >= lo)
    for (let p = lo; p <= hi && p - lo < 1024; p++) ports.add(p);
  for (const [k, v] of Object.entries(env))
    if ((k === 'PORT' || k.endsWith('_PORT')) && /^\d{1,5}$/.test(v))
      ports.add(Number(v));
  return [...ports].filter((p) => p > 0 && p < 65536);
}

/** What the runner leaves in its run directory so a successor (or the supervisor) sweeps too. */
export interface ContainmentRecord {
  slotKey: string;
  worktreePath: string;
  ports: number[];
  cgroup?: string;
}

export const containmentFile = (runDir: string): string =>
  join(runDir, 'containment.json');

export function readContainmentRecord(
  runDir: string,
): ContainmentRecord | undefined {
  try {
    return JSON.parse(
      readFileSync(containmentFile(runDir), 'utf8'),
    ) as ContainmentRecord;
  } catch {
    return undefined;
  }
}
