import { describe, expect, it } from 'vitest';
import { existsSync, rmSync, writeFileSync } from 'node:fs';
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

const cleanups = useCleanups();

describe('crashed slots', () => {
  it('`scale N` with the same N revives a slot quarantined after a crash loop', async () => {
    const repo = tempRepo();
    cleanups.push(repo.cleanup);
    const dir = repo.dir;
    const tmp = tempDir('sup-revive-');
    cleanups.push(() => rmSync(tmp, { recursive: true, force: true }));
    // Runners (and only runners) die at once while the flag file exists.
    const flag = join(tmp, 'crash');
    const hook = join(tmp, 'crash.mjs');
    writeFileSync(
      hook,
      `import { existsSync } from 'node:fs';\n` +
        `if (/agent-runner[\\\\/]main\\.js$/.test(process.argv[1] ?? '') && existsSync(${JSON.stringify(flag)})) process.exit(3);\n`,
    );
    writeFileSync(flag, '');
    const env = testEnv({ NODE_OPTIONS: `--import ${hook}` });
    const sup = await startSupervisor(dir, env, [
      '--agents',
      '1',
      '--no-dashboard',
    ]);
    cleanups.push(async () => void (await sup.stop()));
    // A crash loop re-creates the slot once; crashing on after that, it is quarantined.
    const crashed = await waitFor(
      async () =>
        (await cliJson<any>(['status'], { cwd: dir, env })).agents.find(
          (a: any) =>
            a.state === 'quarantined' &&
            /crash loop \(5 quick exits\) after a repair/.test(a.lastError),
        ),
      { timeoutMs: 120_000, what: 'the slot quarantined after a crash loop' },
    );
    expect(crashed.id).toBe('agent-001');
    rmSync(flag);
    expect(existsSync(flag)).toBe(false);
    // Same count as wanted: before, only `scale 0` then `scale 1` brought it back.
    const r = await runCli(['scale', '1', '--timeout', '90'], {
      cwd: dir,
      env,
      timeoutMs: 120_000,
    });
    expect(r.code).toBe(0);
    const s = await cliJson<any>(['status'], { cwd: dir, env });
    expect(s.agents.map((a: any) => a.state)).toEqual(['idle']);
  });
});
