import { describe, expect, it } from 'vitest';
import { chmodSync, mkdirSync, rmSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { useCleanups } from '../helpers/cleanup.js';
import {
  ROOT,
  cliJson,
  runCli,
  startSupervisor,
  testEnv,
  waitFor,
} from '../helpers/cli.js';
import { tempDir, tempRepo } from '../helpers/repo.js';

const cleanups = useCleanups();
const FAKE = join(ROOT, 'test/fixtures/fake-provider-cli.mjs');

describe('tokens and cost per run', () => {
  it('are read from Claude Code stream-json and Codex exec --json, stored per run and shown by issue show', async () => {
    const repo = tempRepo();
    cleanups.push(repo.cleanup);
    const tmp = tempDir('sup-cost-');
    cleanups.push(() => rmSync(tmp, { recursive: true, force: true }));
    const bin = join(tmp, 'bin');
    mkdirSync(bin);
    chmodSync(FAKE, 0o755);
    for (const t of ['claude', 'codex']) symlinkSync(FAKE, join(bin, t));
    const dir = repo.dir;
    const env = testEnv({
      PATH: `${bin}:${process.env.PATH}`,
      FAKE_STATE_DIR: tmp,
      FAKE_COST_USD: '0.0421',
      FAKE_MODEL: 'claude-sonnet-4-5',
      // Each issue says which agent resolves it (the title picks the command).
      SUPERVISOR_AGENT_COMMAND:
        'case "$ISSUE_TITLE" in *codex*) codex exec --json - < "$ISSUE_PROMPT_FILE";; *) claude -p --output-format stream-json --verbose < "$ISSUE_PROMPT_FILE";; esac',
    });
    for (const t of ['by claude', 'by codex'])
      expect((await runCli(['issue', 'add', t], { cwd: dir, env })).code).toBe(
        0,
      );
    const sup = await startSupervisor(dir, env, [
      '--agents',
      '1',
      '--no-dashboard',
    ]);
    cleanups.push(async () => void (await sup.stop()));
    await waitFor(
      async () =>
        (await cliJson<any[]>(['issue', 'list'], { cwd: dir, env })).every(
          (i) => i.status === 'done',
        ),
      { what: 'both issues done' },
    );
    const claude = await cliJson<any>(['issue', 'show', '1'], {
      cwd: dir,
      env,
    });
    expect(claude.runs[0]).toMatchObject({
      costUsd: 0.0421,
      inputTokens: 1200,
      outputTokens: 450,
      cacheReadTokens: 4000,
      cacheWriteTokens: 300,
      model: 'claude-sonnet-4-5',
      turns: 3,
    });
    const codex = await cliJson<any>(['issue', 'show', '2'], { cwd: dir, env });
    expect(codex.runs[0]).toMatchObject({
      costUsd: null,
      inputTokens: 2000,
      outputTokens: 300,
      cacheReadTokens: 500,
      turns: 1,
    });
    const text = await runCli(['issue', 'show', '1'], { cwd: dir, env });
    expect(text.stdout).toContain('cost: $0.0421 over 1 run(s)');
    expect(text.stdout).toContain('$0.0421 · 6.0k tok');
  });
});
