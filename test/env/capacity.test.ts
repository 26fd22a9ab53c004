import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import {
  cliJson,
  runCli,
  startSupervisor,
  testEnv,
  waitFor,
} from '../helpers/cli.js';
import { git, tempRepo } from '../helpers/repo.js';
import { holdPorts, randomPortBase } from './helpers.js';

/**
 * A slot that cannot be started: `crashed` while the scaler retries it, `quarantined` once it
 * has given up (after a re-creation of the slot that did not help either).
 */
const failedToStart = (state: string | undefined): boolean =>
  state === 'crashed' || state === 'quarantined';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function setup(env: Record<string, unknown> = {}) {
  const repo = tempRepo();
  cleanups.push(repo.cleanup);
  const base = randomPortBase();
  writeFileSync(
    join(repo.dir, 'supervisor.config.json'),
    JSON.stringify({
      env: { ...env, ports: { base, ...((env.ports as object) ?? {}) } },
    }),
  );
  return { dir: repo.dir, base, env: testEnv() };
}

function allocationRows(dir: string): string[] {
  const file = join(dir, '.supervisor', 'supervisor.db');
  if (!existsSync(file)) return [];
  const db = new Database(file, { readonly: true });
  try {
    return (
      db.prepare('SELECT slot FROM env_allocations ORDER BY slot').all() as {
        slot: string;
      }[]
    ).map((r) => r.slot);
  } finally {
    db.close();
  }
}

function worktrees(dir: string): string[] {
  const d = join(dir, '.worktrees');
  return existsSync(d) ? readdirSync(d).sort() : [];
}

const agentBranches = (dir: string) =>
  git(dir, 'branch', '--list', 'agent/*')
    .split('\n')
    .map((l) => l.replace(/^[*+ ]+/, '').trim())
    .filter(Boolean);

describe('scale bounded by what the environment can hand out', () => {
  it('refuses --agents 1000 --max-agents 1000 before making any worktree, naming the limit', async () => {
    const s = setup();
    const r = await runCli(
      ['start', '--agents', '1000', '--max-agents', '1000', '--no-dashboard'],
      { cwd: s.dir, env: s.env },
    );
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(
      /error: 1000 agents need 1000 port blocks, but env\.ports gives 64 blocks of 10 ports .*: at most 64 agents/,
    );
    expect(r.stderr).toMatch(/hint: run at most 64 agents, or raise/);
    // 16 agents fit the port blocks but not the 15 Redis DBs.
    const r16 = await runCli(
      ['start', '--agents', '16', '--max-agents', '100', '--no-dashboard'],
      {
        cwd: s.dir,
        env: s.env,
      },
    );
    expect(r16.code).toBe(2);
    expect(r16.stderr).toMatch(
      /16 agents need 16 Redis DBs, but env\.redis\.dbRange 1\.\.15 gives 15 usable DB indices: at most 15 agents/,
    );
    expect(r16.stderr).toMatch(/hint: .*databases/);
    expect(worktrees(s.dir)).toEqual([]);
    expect(agentBranches(s.dir)).toEqual([]);
    expect(allocationRows(s.dir)).toEqual([]);
  });

  it("counts the Redis server's real number of databases at start", async () => {
    // The range claims 40 DBs; the server has 16 (indices 0..15): the supervisor asks it.
    const s = setup({ redis: { dbRange: [1, 40] } });
    const r = await runCli(
      ['start', '--agents', '20', '--max-agents', '100', '--no-dashboard'],
      { cwd: s.dir, env: s.env },
    );
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toMatch(
      /20 agents need 20 Redis DBs, but env\.redis\.dbRange 1\.\.40 gives 15 usable DB indices \(the server has 16 databases\)/,
    );
    expect(worktrees(s.dir)).toEqual([]);
    expect(agentBranches(s.dir)).toEqual([]);
  });

  it('a slot whose environment cannot be allocated leaves no worktree, branch or allocation; scale above the limit is refused', async () => {
    const s = setup({ ports: { blockSize: 3, maxBlocks: 2 } });
    const holder = await holdPorts([s.base, s.base + 1, s.base + 2]);
    cleanups.push(holder.release);
    const sup = await startSupervisor(s.dir, s.env, [
      '--agents',
      '2',
      '--no-dashboard',
    ]);
    cleanups.push(async () => void (await sup.stop()));
    type Agent = { id: string; state: string; lastError: string | null };
    const list = await waitFor(
      async () => {
        const l = (
          await cliJson<{ agents: Agent[] }>(['status'], {
            cwd: s.dir,
            env: s.env,
          })
        ).agents;
        return l.some((a) => a.state === 'idle') &&
          l.some((a) => failedToStart(a.state) && a.lastError)
          ? l
          : false;
      },
      { what: 'one slot up, one out of ports', timeoutMs: 60_000 },
    );
    const up = list.find((a) => a.state === 'idle')!;
    const out = list.find((a) => failedToStart(a.state))!;
    expect(out.lastError).toMatch(/no free port block/);
    expect(worktrees(s.dir)).toEqual([up.id]);
    expect(agentBranches(s.dir)).toEqual([`agent/${up.id.slice(6)}`]);
    expect(allocationRows(s.dir)).toEqual([up.id]);

    const r = await runCli(['scale', '3', '--no-wait'], {
      cwd: s.dir,
      env: s.env,
    });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/3 agents need 3 port blocks, .*: at most 2/);
  });
});
