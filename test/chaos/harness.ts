/**
 * The chaos harness: many agents, many issues of random duration, and faults injected while
 * they run (kill -9 of runners, SIGSTOP of a runner past its lock, kill -9 of the supervisor,
 * Redis restarts keeping and losing its data, agents that hang). At the end it judges lost and
 * duplicated work from independent evidence — the scripted agent's own record of its attempts
 * with their exit codes, and git (./evidence.ts) — then checks the supervisor's SQLite against
 * it. Every fault kind asked for must have fired at least once.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import {
  overlapsOf,
  pairAttempts,
  type Attempt,
} from '../helpers/agent-record.js';
import { processAlive, readRecord } from '../helpers/agents.js';
import { judgeFromRecordAndGit, type ScriptKind } from './evidence.js';
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
  | 'kill-runner'
  | 'freeze-runner'
  | 'kill-supervisor'
  /** Redis stopped and started again with its data (AOF, unless the run has none). */
  | 'restart-redis'
  /** Redis stopped and started empty: what a restart without persistence does. */
  | 'lose-redis';

export interface ChaosOptions {
  agents: number;
  issues: number;
  /** Agent work per issue, ms: uniform in [min, max]. */
  durationMs: [number, number];
  /** Share of issues whose agent exits non-zero every time (they must end failed). */
  failingShare: number;
  /** Share of issues whose agent hangs silently (killed by the progress timeout, end failed). */
  hangingShare: number;
  /** Kinds to inject, each at least once (the run fails otherwise), least-fired first. */
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

export interface ChaosSummary {
  issues: number;
  done: number;
  failed: number;
  unexpected: string[];
  faults: FaultRecord[];
  reclaims: number;
  reclaimMedianMs: number | null;
  reclaimMaxMs: number | null;
  /** Fault kinds asked for that never fired. */
  faultsMissing: FaultKind[];
  /** Attempts (agent processes) by the agent's own record, and how they closed. */
  attempts: number;
  /** The agent record's start/end lines that do not pair up in order. */
  recordErrors: string[];
  overlaps: Array<{ issue: string; a: Attempt; b: Attempt; ms: number }>;
  frozenOverlaps: Array<{ issue: string; ms: number }>;
  /** From the agent record and git (./evidence.ts). */
  lost: string[];
  duplicated: string[];
  wrongWork: string[];
  /** Issues whose agent finished successfully more than once (allowed: at-least-once). */
  repeatedSuccesses: number;
  /** SQLite against the evidence. */
  duplicatedResults: string[];
  unrecordedStarts: string[];
  branchMismatches: string[];
  orphans: string[];
  wallMs: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Script {
  kind: ScriptKind;
  body: string;
}

/**
 * Watches the agents' processes from their record and notes when each attempt's process dies
 * (a SIGKILLed agent writes no closing line). Keyed by attempt key: pids get reused.
 */
class DeathWatch {
  readonly deaths = new Map<string, number>();
  private timer: NodeJS.Timeout;
  constructor(private readonly recordFile: string) {
    this.timer = setInterval(() => this.poll(), 25);
  }
  private poll(): void {
    const lines = readRecord(this.recordFile);
    const closed = new Set(
      lines.filter((l) => l.what !== 'start').map((l) => l.key),
    );
    for (const l of lines) {
      if (l.what !== 'start' || closed.has(l.key) || this.deaths.has(l.key))
        continue;
      if (!processAlive(l.pid)) this.deaths.set(l.key, Date.now());
    }
  }
  stop(): void {
    clearInterval(this.timer);
    this.poll();
  }
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
    const fired = (kind: FaultKind) =>
      faults.filter((f) => f.kind === kind).length;
    for (;;) {
      if (await finished()) break;
      if (Date.now() > deadline)
        throw new Error(`chaos run did not finish within ${o.timeoutMs} ms`);
      if (o.faults.length && Date.now() >= nextFault) {
        // The least-fired kind first (ties in the order given); a kind that finds nothing to
        // hit (no busy runner) gives way to the next.
        const kinds = [...new Set(o.faults)].sort(
          (a, b) => fired(a) - fired(b),
        );
        for (const kind of kinds) {
          const f = await inject(kind);
          if (!f) continue;
          faults.push(f);
          log(
            `fault ${faults.length}: ${kind}${f.agentId ? ` ${f.agentId}` : ''}${f.issueId ? ` (#${f.issueId})` : ''}`,
          );
          nextFault = Date.now() + between(o.faultGapMs);
          break;
        }
      }
      await sleep(250);
    }

    /** Busy runners, from the agents' own record and the runners' pid files (not from status). */
    function working(): Array<{ id: string; pid: number; issue: string }> {
      const lines = readRecord(recordFile);
      const closed = new Set(
        lines.filter((l) => l.what !== 'start').map((l) => l.key),
      );
      const out: Array<{ id: string; pid: number; issue: string }> = [];
      for (const l of lines) {
        if (l.what !== 'start' || closed.has(l.key) || !processAlive(l.pid))
          continue;
        const f = join(dir, '.supervisor/run', l.agent, 'runner.json');
        if (!existsSync(f)) continue;
        try {
          const { pid } = JSON.parse(readFileSync(f, 'utf8')) as {
            pid: number;
          };
          if (processAlive(pid)) out.push({ id: l.agent, pid, issue: l.issue });
        } catch {
          /* being rewritten by a restarting runner */
        }
      }
      return out;
    }

    async function inject(kind: FaultKind): Promise<FaultRecord | undefined> {
      const at = Date.now();
      switch (kind) {
        case 'kill-runner': {
          const busy = working();
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
          const busy = working();
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
        case 'restart-redis':
        case 'lose-redis': {
          await redis.stop();
          if (kind === 'lose-redis') redis.wipe();
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
    const paired = pairAttempts(readRecord(recordFile), watch.deaths, now);
    const ivs = paired.attempts;

    // Re-claim times: the next start of the faulted issue after the fault.
    for (const f of faults) {
      if (!f.issueId) continue;
      const next = ivs
        .filter((iv) => iv.issue === f.issueId && iv.start > f.at)
        .sort((a, b) => a.start - b.start)[0];
      if (next) f.reclaimMs = next.start - f.at;
    }

    // Overlaps: two attempts of one issue alive at the same time; a frozen runner's agent
    // (SIGSTOP window) is the one allowed exception, measured apart.
    const overlaps: ChaosSummary['overlaps'] = [];
    const frozenOverlaps: ChaosSummary['frozenOverlaps'] = [];
    for (const ov of overlapsOf(ivs)) {
      const frozen = faults.some(
        (f) =>
          f.kind === 'freeze-runner' &&
          f.agentId === ov.a.agent &&
          f.at <= ov.b.start &&
          (f.frozenUntil ?? 0) >= ov.b.start,
      );
      if (frozen) frozenOverlaps.push({ issue: ov.issue, ms: ov.ms });
      else overlaps.push(ov);
    }

    // Ground truth from the agents' record and git, never from the supervisor.
    const evidence = judgeFromRecordAndGit(
      dir,
      'main',
      new Map([...scripts].map(([id, sc]) => [id, sc.kind])),
      ivs,
    );

    // The supervisor's SQLite against that evidence.
    const list = api.listIssues();
    const unexpected: string[] = [];
    const duplicatedResults: string[] = [];
    const unrecordedStarts: string[] = [];
    const branchMismatches: string[] = [];
    for (const issue of list) {
      const id = String(issue.id);
      const script = scripts.get(id)!;
      const want = script.kind === 'ok' ? 'done' : 'failed';
      if (issue.status !== want)
        unexpected.push(`#${id} ${script.kind}: ${issue.status}`);
      const shown = api.getIssue(issue.id);
      const succeeded = shown.runs.filter((r) => r.outcome === 'succeeded');
      const mine = ivs.filter((iv) => iv.issue === id);
      // What both sides saw, for the failure message: the agent's attempts, SQLite's runs, the faults.
      const t = (ms: number | null | undefined) =>
        ms == null ? '?' : `${((ms - started) / 1000).toFixed(1)}s`;
      const story = () =>
        `agent starts [${mine.map((a) => `${a.agent}@${t(a.start)}-${t(a.end)} ${a.closedBy}${a.exit ?? ''}`).join(', ')}], runs [${shown.runs.map((r) => `${r.agent}#${r.attempt}@${t(r.startedAt)} ${r.outcome}`).join(', ')}]; faults [${faults.map((f) => `${f.kind}@${t(f.at)}`).join(', ')}]`;
      if (
        succeeded.length > 1 ||
        (issue.status === 'done' && succeeded.length !== 1)
      )
        duplicatedResults.push(
          `#${id}: ${succeeded.length} succeeded runs: ${story()}`,
        );
      if (mine.length > shown.runs.length)
        unrecordedStarts.push(
          `#${id}: ${mine.length} agent starts, ${shown.runs.length} runs: ${story()}`,
        );
      if (issue.status === 'done') {
        const branch = gitOrNothing(dir, `refs/heads/issue/${id}`);
        if (
          !issue.commit ||
          branch !== issue.commit ||
          succeeded[0]?.commitSha !== issue.commit
        )
          branchMismatches.push(
            `#${id}: SQLite ${issue.commit ?? 'no commit'}, git ${branch ?? 'no branch'}`,
          );
      }
    }

    // Orphans: agents or runners still alive, worktrees git does not know.
    const orphans: string[] = [];
    for (const a of ivs)
      if (a.closedBy !== 'end' && processAlive(a.pid))
        orphans.push(`agent pid ${a.pid} (#${a.issue})`);
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
      faultsMissing: o.faults.filter((k) => !faults.some((f) => f.kind === k)),
      attempts: ivs.length,
      recordErrors: paired.errors,
      reclaims: reclaims.length,
      reclaimMedianMs: reclaims.length
        ? reclaims[Math.floor(reclaims.length / 2)]!
        : null,
      reclaimMaxMs: reclaims.length ? reclaims[reclaims.length - 1]! : null,
      overlaps,
      frozenOverlaps,
      lost: evidence.lost,
      duplicated: evidence.duplicated,
      wrongWork: evidence.wrong,
      repeatedSuccesses: evidence.repeated,
      duplicatedResults,
      unrecordedStarts,
      branchMismatches,
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

function gitOrNothing(dir: string, ref: string): string | undefined {
  try {
    return git(dir, 'rev-parse', '--verify', '-q', ref);
  } catch {
    return undefined;
  }
}
