/**
 * The chaos harness: many agents, many issues of random duration, and faults injected while
 * they run (kill -9 of runners, SIGSTOP of a runner past its lock, kill -9 of the supervisor,
 * Redis restarts with and without persistence, agents that hang). At the end it checks the
 * guarantees from the scripted agent's own start/end log and from SQLite and git.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import {
  processAlive,
  readRecord,
  type RecordLine,
} from '../helpers/agents.js';
import { openSupervisor, type Supervisor } from '../../index.js';
import {
  startSupervisor,
  testEnv,
  type RunningSupervisor,
} from '../helpers/cli.js';
import { PrivateRedis } from '../helpers/redis-server.js';
import { git, tempDir, tempRepo } from '../helpers/repo.js';
import { seededRandom } from '../helpers/random.js';

export type FaultKind =
  'kill-runner' | 'freeze-runner' | 'kill-supervisor' | 'restart-redis';

export interface ChaosOptions {
  agents: number;
  issues: number;
  /** Agent work per issue, ms: uniform in [min, max]. */
  durationMs: [number, number];
  /** Share of issues whose agent exits non-zero every time (they must end failed). */
  failingShare: number;
  /** Share of issues whose agent hangs silently (killed by the progress timeout, end failed). */
  hangingShare: number;
  faults: FaultKind[];
  /** Pause between faults, ms: uniform in [min, max]. */
  faultGapMs: [number, number];
  redisPersistence: 'aof' | 'none';
  seed: number;
  timeoutMs: number;
  log?: (line: string) => void;
}

export interface FaultRecord {
  kind: FaultKind;
  at: number;
  agentId?: string;
  issueId?: string;
  /** When the affected issue was started again by an agent (ms after the fault). */
  reclaimMs?: number;
  /** SIGSTOP window, for the frozen-runner exception. */
  frozenUntil?: number;
}

export interface Interval {
  issue: string;
  agent: string;
  pid: number;
  start: number;
  end: number;
}

export interface ChaosSummary {
  issues: number;
  done: number;
  failed: number;
  unexpected: string[];
  faults: FaultRecord[];
  reclaims: number;
  reclaimMedianMs: number | null;
  reclaimMaxMs: number | null;
  overlaps: Array<{ issue: string; a: Interval; b: Interval; ms: number }>;
  frozenOverlaps: Array<{ issue: string; ms: number }>;
  duplicatedResults: string[];
  unrecordedStarts: string[];
  branchMismatches: string[];
  lost: string[];
  orphans: string[];
  wallMs: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Script {
  kind: 'ok' | 'fail' | 'hang';
  body: string;
}

/** Watches agent pids from the record log and notes when each one dies (SIGKILL leaves no "end" line). */
class DeathWatch {
  readonly deaths = new Map<number, number>();
  private timer: NodeJS.Timeout;
  constructor(private readonly recordFile: string) {
    this.timer = setInterval(() => this.poll(), 25);
  }
  private poll(): void {
    const lines = readRecord(this.recordFile);
    const ended = new Set(
      lines.filter((l) => l.what !== 'start').map((l) => l.pid),
    );
    for (const l of lines) {
      if (l.what !== 'start' || ended.has(l.pid) || this.deaths.has(l.pid))
        continue;
      if (!processAlive(l.pid)) this.deaths.set(l.pid, Date.now());
    }
  }
  stop(): void {
    clearInterval(this.timer);
    this.poll();
  }
}

export function intervals(
  lines: RecordLine[],
  deaths: Map<number, number>,
  now: number,
): Interval[] {
  const out: Interval[] = [];
  const endOf = new Map<number, number>();
  for (const l of lines)
    if (l.what !== 'start')
      endOf.set(l.pid, Math.min(endOf.get(l.pid) ?? Infinity, l.at));
  for (const l of lines) {
    if (l.what !== 'start') continue;
    const end = endOf.get(l.pid) ?? deaths.get(l.pid) ?? now;
    out.push({ issue: l.issue, agent: l.agent, pid: l.pid, start: l.at, end });
  }
  return out;
}

export async function runChaos(o: ChaosOptions): Promise<ChaosSummary> {
  const log = o.log ?? (() => undefined);
  const rand = seededRandom(o.seed);
  const between = ([a, b]: [number, number]) =>
    Math.round(a + rand() * (b - a));
  const repo = tempRepo();
  const recordFile = join(tempDir('sup-chaos-'), 'record.log');
  const redis = await PrivateRedis.create(o.redisPersistence);
  await redis.start();
  const env = testEnv({
    REDIS_URL: redis.url,
    AGENT_RECORD_FILE: recordFile,
    SUPERVISOR_MAX_AGENTS: String(Math.max(o.agents, 10)),
    SUPERVISOR_PROGRESS_TIMEOUT: '1500',
    SUPERVISOR_MAX_STALLED_COUNT: '10',
    SUPERVISOR_ATTEMPTS: '2',
  });
  const dir = repo.dir;
  const started = Date.now();
  const scripts = new Map<string, Script>();
  let sup: RunningSupervisor | undefined;
  let api: Supervisor | undefined;
  const watch = new DeathWatch(recordFile);
  const faults: FaultRecord[] = [];
  try {
    for (let i = 1; i <= o.issues; i++) {
      const r = rand();
      const script: Script =
        r < o.failingShare
          ? { kind: 'fail', body: `sleep: ${between(o.durationMs)}\nexit: 5` }
          : r < o.failingShare + o.hangingShare
            ? { kind: 'hang', body: 'silent-sleep: 600000' }
            : { kind: 'ok', body: `sleep: ${between(o.durationMs)}` };
      scripts.set(String(i), script);
    }
    // Issues go in through the programmatic API (the CLI is tested elsewhere; 200 spawns are slow).
    api = await openSupervisor({ repo: dir, env: { ...process.env, ...env } });
    for (const [id, s] of scripts) {
      const added = api.addIssue({
        title: `chaos issue ${id} (${s.kind})`,
        body: s.body,
      });
      if (String(added.id) !== id)
        throw new Error(`unexpected issue id ${added.id}`);
    }
    sup = await startSupervisor(dir, env, [
      '--agents',
      String(o.agents),
      '--no-dashboard',
    ]);
    log(
      `chaos: ${o.issues} issues, ${o.agents} agents, faults ${o.faults.join(', ')}, redis ${o.redisPersistence}, seed ${o.seed}`,
    );

    const finished = () =>
      api!
        .listIssues()
        .every((i) => i.status === 'done' || i.status === 'failed');
    const deadline = started + o.timeoutMs;
    let nextFault = Date.now() + between(o.faultGapMs);
    let k = 0;
    for (;;) {
      if (await finished()) break;
      if (Date.now() > deadline)
        throw new Error(`chaos run did not finish within ${o.timeoutMs} ms`);
      if (o.faults.length && Date.now() >= nextFault) {
        const kind = o.faults[k++ % o.faults.length]!;
        const f = await inject(kind);
        if (f) {
          faults.push(f);
          log(
            `fault ${faults.length}: ${kind}${f.agentId ? ` ${f.agentId}` : ''}${f.issueId ? ` (#${f.issueId})` : ''}`,
          );
        }
        nextFault = Date.now() + between(o.faultGapMs);
      }
      await sleep(250);
    }

    async function working(): Promise<
      Array<{ id: string; pid: number; issue: string }>
    > {
      const s = await api!.status();
      return s.agents
        .filter((a) => a.state === 'working' && a.pid && a.issue)
        .map((a) => ({ id: a.id, pid: a.pid!, issue: a.issue!.id }));
    }

    async function inject(kind: FaultKind): Promise<FaultRecord | undefined> {
      const at = Date.now();
      switch (kind) {
        case 'kill-runner': {
          const busy = await working();
          const victim = busy[Math.floor(rand() * busy.length)];
          if (!victim) return undefined;
          try {
            process.kill(victim.pid, 'SIGKILL');
          } catch {
            return undefined;
          }
          return {
            kind,
            at: Date.now(),
            agentId: victim.id,
            issueId: victim.issue,
          };
        }
        case 'freeze-runner': {
          const busy = await working();
          const victim = busy[Math.floor(rand() * busy.length)];
          if (!victim) return undefined;
          const stopAt = Date.now();
          process.kill(victim.pid, 'SIGSTOP');
          // Past its lock (2 s) and a stalled check (1 s), then some.
          await sleep(4500);
          process.kill(victim.pid, 'SIGCONT');
          return {
            kind,
            at: stopAt,
            agentId: victim.id,
            issueId: victim.issue,
            frozenUntil: Date.now(),
          };
        }
        case 'kill-supervisor': {
          sup!.child.kill('SIGKILL');
          await sup!.exited;
          await sleep(300);
          sup = await startSupervisor(dir, env, ['--no-dashboard']);
          return { kind, at };
        }
        case 'restart-redis': {
          await redis.stop();
          await sleep(300);
          await redis.start();
          return { kind, at };
        }
      }
    }

    // Settle, then stop everything and check for orphans.
    await sup.stop();
    sup = undefined;
    watch.stop();
    const now = Date.now();
    const lines = readRecord(recordFile);
    const ivs = intervals(lines, watch.deaths, now);

    // Re-claim times: the next start of the faulted issue after the fault.
    for (const f of faults) {
      if (!f.issueId) continue;
      const next = ivs
        .filter((iv) => iv.issue === f.issueId && iv.start > f.at)
        .sort((a, b) => a.start - b.start)[0];
      if (next) f.reclaimMs = next.start - f.at;
    }

    // Overlaps: two attempts of one issue alive at the same time.
    const overlaps: ChaosSummary['overlaps'] = [];
    const frozenOverlaps: ChaosSummary['frozenOverlaps'] = [];
    const byIssue = new Map<string, Interval[]>();
    for (const iv of ivs)
      byIssue.set(iv.issue, [...(byIssue.get(iv.issue) ?? []), iv]);
    for (const [issue, list] of byIssue) {
      list.sort((a, b) => a.start - b.start);
      for (let i = 0; i < list.length; i++) {
        for (let j = i + 1; j < list.length; j++) {
          const a = list[i]!;
          const b = list[j]!;
          if (b.start >= a.end) continue;
          const ms = a.end - b.start;
          const frozen = faults.some(
            (f) =>
              f.kind === 'freeze-runner' &&
              f.agentId === a.agent &&
              f.at <= b.start &&
              (f.frozenUntil ?? 0) >= b.start,
          );
          if (frozen) frozenOverlaps.push({ issue, ms });
          else overlaps.push({ issue, a, b, ms });
        }
      }
    }

    const list = api.listIssues();
    const unexpected: string[] = [];
    const duplicatedResults: string[] = [];
    const unrecordedStarts: string[] = [];
    const branchMismatches: string[] = [];
    const lost: string[] = [];
    for (const issue of list) {
      const id = String(issue.id);
      const script = scripts.get(id)!;
      const want = script.kind === 'ok' ? 'done' : 'failed';
      if (issue.status !== want)
        unexpected.push(`#${id} ${script.kind}: ${issue.status}`);
      if (issue.status !== 'done' && issue.status !== 'failed')
        lost.push(`#${id}`);
      const shown = api.getIssue(issue.id);
      const succeeded = shown.runs.filter((r) => r.outcome === 'succeeded');
      if (
        succeeded.length > 1 ||
        (issue.status === 'done' && succeeded.length !== 1)
      )
        duplicatedResults.push(`#${id}: ${succeeded.length} succeeded runs`);
      const starts = lines.filter(
        (l) => l.what === 'start' && l.issue === id,
      ).length;
      if (starts > shown.runs.length)
        unrecordedStarts.push(
          `#${id}: ${starts} agent starts, ${shown.runs.length} runs`,
        );
      if (issue.status === 'done' && issue.commit) {
        const branch = git(dir, 'rev-parse', `refs/heads/issue/${id}`);
        if (branch !== issue.commit || succeeded[0]?.commitSha !== issue.commit)
          branchMismatches.push(`#${id}`);
      }
    }

    // Orphans: agents or runners still alive, worktrees git does not know.
    const orphans: string[] = [];
    for (const l of lines)
      if (l.what === 'start' && processAlive(l.pid))
        orphans.push(`agent pid ${l.pid} (#${l.issue})`);
    const runDir = join(dir, '.supervisor/run');
    if (existsSync(runDir)) {
      for (const slot of readdirSync(runDir)) {
        const f = join(runDir, slot, 'runner.json');
        if (!existsSync(f)) continue;
        const pid = (JSON.parse(readFileSync(f, 'utf8')) as { pid: number })
          .pid;
        if (processAlive(pid)) orphans.push(`runner ${slot} pid ${pid}`);
      }
    }
    const worktrees = execFileSync('git', ['worktree', 'list', '--porcelain'], {
      cwd: dir,
      encoding: 'utf8',
    });
    if (/^prunable/m.test(worktrees)) orphans.push('prunable worktree');
    for (const m of worktrees.matchAll(/^worktree (.+)$/gm)) {
      const p = m[1]!;
      if (p !== dir && !/\/\.worktrees\/agent-\d{3}$/.test(p))
        orphans.push(`worktree ${p}`);
    }

    const reclaims = faults
      .filter((f) => f.reclaimMs !== undefined)
      .map((f) => f.reclaimMs!)
      .sort((a, b) => a - b);
    return {
      issues: list.length,
      done: list.filter((i) => i.status === 'done').length,
      failed: list.filter((i) => i.status === 'failed').length,
      unexpected,
      faults,
      reclaims: reclaims.length,
      reclaimMedianMs: reclaims.length
        ? reclaims[Math.floor(reclaims.length / 2)]!
        : null,
      reclaimMaxMs: reclaims.length ? reclaims[reclaims.length - 1]! : null,
      overlaps,
      frozenOverlaps,
      duplicatedResults,
      unrecordedStarts,
      branchMismatches,
      lost,
      orphans,
      wallMs: Date.now() - started,
    };
  } finally {
    watch.stop();
    if (sup) await sup.stop();
    await api?.close();
    await redis.stop();
    repo.cleanup();
  }
}

export function formatSummary(s: ChaosSummary): string {
  const count = (k: FaultKind) => s.faults.filter((f) => f.kind === k).length;
  const rows: Array<[string, string]> = [
    ['issues (done / failed)', `${s.issues} (${s.done} / ${s.failed})`],
    ['faults: kill -9 runner', String(count('kill-runner'))],
    ['faults: SIGSTOP runner past its lock', String(count('freeze-runner'))],
    ['faults: kill -9 supervisor + restart', String(count('kill-supervisor'))],
    ['faults: Redis restart', String(count('restart-redis'))],
    ['re-claims measured', String(s.reclaims)],
    [
      'fault → re-claim, median / max',
      s.reclaims ? `${s.reclaimMedianMs} ms / ${s.reclaimMaxMs} ms` : '-',
    ],
    ['overlapping attempts', String(s.overlaps.length)],
    [
      'frozen-runner overlaps (max)',
      `${s.frozenOverlaps.length}${s.frozenOverlaps.length ? ` (${Math.max(...s.frozenOverlaps.map((f) => f.ms))} ms)` : ''}`,
    ],
    ['unexpected outcomes', String(s.unexpected.length)],
    ['lost issues', String(s.lost.length)],
    ['duplicated results', String(s.duplicatedResults.length)],
    ['attempts not recorded', String(s.unrecordedStarts.length)],
    ['branch mismatches', String(s.branchMismatches.length)],
    ['orphans', String(s.orphans.length)],
    ['wall time', `${(s.wallMs / 1000).toFixed(1)} s`],
  ];
  const w = Math.max(...rows.map((r) => r[0].length));
  return rows.map(([k, v]) => `${k.padEnd(w)}  ${v}`).join('\n');
}

/** The guarantees every chaos run must show. */
export function checkGuarantees(
  summary: ChaosSummary,
  expect: (v: unknown) => {
    toEqual(x: unknown): void;
    toBeLessThanOrEqual(n: number): void;
  },
): void {
  expect(summary.unexpected).toEqual([]);
  expect(summary.lost).toEqual([]);
  expect(summary.overlaps).toEqual([]);
  for (const f of summary.frozenOverlaps)
    expect(f.ms).toBeLessThanOrEqual(2000);
  expect(summary.duplicatedResults).toEqual([]);
  expect(summary.unrecordedStarts).toEqual([]);
  expect(summary.branchMismatches).toEqual([]);
  expect(summary.orphans).toEqual([]);
}
