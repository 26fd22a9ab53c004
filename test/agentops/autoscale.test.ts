/**
 * Autoscaling on queue depth against a real supervisor (process runtime, real Redis, git and
 * the scripted agent): started with `autoscale` in its configuration and no agents, a pause holds
 * a backlog at zero agents; once resumed the agents grow to the maximum and no further; when the
 * work is done and the agents have been idle for the grace period they go back to the minimum
 * (zero). `scale --auto` changes the range of the running supervisor, a fixed `scale N` ends it.
 */
import { describe, expect, it } from 'vitest';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { useCleanups } from '../helpers/cleanup.js';
import {
  cliJson,
  runCli,
  startSupervisor,
  testEnv,
  waitFor,
} from '../helpers/cli.js';
import { tempDir, tempRepo } from '../helpers/repo.js';
import { readAutoscale } from '../../supervisor/autoscaler.js';
import { openDatabase } from '../../supervisor/store/db.js';

const cleanups = useCleanups();

const LIVE = new Set(['starting', 'idle', 'working']);

describe('autoscale', () => {
  it('a pause holds the backlog at 0 agents; resumed, agents grow to max and no further; idle past the grace, back to min', async () => {
    const repo = tempRepo();
    cleanups.push(repo.cleanup);
    const dir = repo.dir;
    const tmp = tempDir('sup-autoscale-');
    cleanups.push(() => rmSync(tmp, { recursive: true, force: true }));
    writeFileSync(
      join(dir, 'supervisor.config.json'),
      JSON.stringify({
        autoscale: { min: 0, max: 3, idleGrace: '1s' },
        // Memory headroom counts in the limit; a small threshold keeps a loaded machine from
        // holding the test below its maximum.
        admission: { minAvailableMemory: '64m' },
      }),
    );
    const env = testEnv();
    const sup = await startSupervisor(dir, env, ['--no-dashboard']);
    cleanups.push(async () => void (await sup.stop()));
    const status = () => cliJson<any>(['status'], { cwd: dir, env });
    const live = (s: any) =>
      s.agents.filter((a: any) => LIVE.has(a.state)).length;
    expect((await status()).desiredAgents).toBe(0);

    expect(
      (await runCli(['pause', '--reason', 'test'], { cwd: dir, env })).code,
    ).toBe(0);
    const gate = join(tmp, 'go');
    for (let k = 1; k <= 5; k++)
      expect(
        (
          await runCli(
            ['issue', 'add', `Work ${k}`, '--body', `wait-file: ${gate}`],
            { cwd: dir, env },
          )
        ).code,
      ).toBe(0);
    await waitFor(
      () =>
        /autoscale: holding 0 agents while claiming is paused/.test(sup.output),
      { what: 'the autoscaler holding the count during the pause' },
    );
    let s = await status();
    expect(s.desiredAgents).toBe(0);
    expect(live(s)).toBe(0);

    // Resumed: five waiting, a maximum of three.
    expect((await runCli(['resume'], { cwd: dir, env })).code).toBe(0);
    let most = 0;
    s = await waitFor(
      async () => {
        const st = await status();
        most = Math.max(most, st.desiredAgents, live(st));
        return (
          st.agents.filter((a: any) => a.state === 'working').length === 3 && st
        );
      },
      { what: 'three agents working', timeoutMs: 180_000 },
    );
    expect(s.desiredAgents).toBe(3);
    expect(most).toBe(3);

    writeFileSync(gate, '');
    await waitFor(
      async () => {
        const st = await status();
        most = Math.max(most, st.desiredAgents, live(st));
        return st.issues.done === 5 && st.desiredAgents === 0 && live(st) === 0;
      },
      { what: 'all done and the agents scaled back to 0', timeoutMs: 180_000 },
    );
    expect(most).toBe(3);
    expect(sup.output).toMatch(/autoscale: 0 → 3 agents \(\d+ waiting/);

    // The range of the running supervisor changes with `scale --auto`; `scale N` ends it.
    const auto = await cliJson<any>(['scale', '--auto', '1..2', '--json'], {
      cwd: dir,
      env,
    });
    expect(auto.autoscale).toEqual({ min: 1, max: 2, idleGraceMs: 1000 });
    await waitFor(
      async () => {
        const st = await status();
        return (
          st.desiredAgents === 1 &&
          st.agents.some((a: any) => a.state === 'idle')
        );
      },
      { what: 'the new minimum of 1 agent' },
    );
    expect((await runCli(['scale', '0'], { cwd: dir, env })).code).toBe(0);
    const db = openDatabase(join(dir, '.supervisor', 'supervisor.db'));
    try {
      expect(readAutoscale(db)).toBeUndefined();
    } finally {
      db.close();
    }
    expect((await status()).desiredAgents).toBe(0);
  });

  it('refuses a bad range with a usage error, and one above the maximum', async () => {
    const repo = tempRepo();
    cleanups.push(repo.cleanup);
    const env = testEnv();
    const bad = await runCli(['scale', '--auto', '3..1'], {
      cwd: repo.dir,
      env,
    });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/3\.\.1 is not a range/);
    const big = await runCli(['scale', '--auto', '0..99'], {
      cwd: repo.dir,
      env,
    });
    expect(big.code).not.toBe(0);
    expect(big.stderr).toMatch(/99 agents is above the maximum of 10/);
    const both = await runCli(['scale', '2', '--auto', '0..2'], {
      cwd: repo.dir,
      env,
    });
    expect(both.code).toBe(2);
    expect(both.stderr).toMatch(/not both/);
  });
});
