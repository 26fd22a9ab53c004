/**
 * Disk full while writing logs: a 2 MB tmpfs over `.supervisor/logs` and an agent that prints
 * 4 MB. The runner survives (before the fix, ENOSPC on its output killed it, and, restarted, it
 * died again: a crash loop holding the job), the issue ends done with the log error recorded,
 * nothing is stuck in progress, and once space is freed the next issue completes with its log.
 * Needs root (mount): fails under CI without it, skipped otherwise.
 */
import { afterEach, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, rmSync, truncateSync } from 'node:fs';
import { join } from 'node:path';
import { cliJson, runCli, waitFor } from '../helpers/cli.js';
import { git } from '../helpers/repo.js';
import { describeNeeds, needsRoot } from '../helpers/requirements.js';
import { cleanupList, isolatedRepo, start } from './util.js';

const cleanups = cleanupList();
afterEach(() => cleanups.run());

/** Prints as many KiB as its body says, in 1 KiB lines, then writes a file (something to commit). */
const LOUD_AGENT = `node -e 'const kb = Number(process.env.ISSUE_BODY || 0); const line = "x".repeat(1023) + "\\n"; for (let i = 0; i < kb; i++) process.stdout.write(line); require("fs").writeFileSync("out-" + process.env.ISSUE_ID + ".txt", process.env.ISSUE_TITLE + "\\n")'`;

describeNeeds(
  needsRoot('it mounts a small tmpfs'),
  'disk full while writing logs',
  () => {
    it('records the log error, keeps the runner and loses nothing; after space is freed the next issue completes', async () => {
      const { dir, env } = isolatedRepo(cleanups, {
        SUPERVISOR_AGENT_COMMAND: LOUD_AGENT,
        // The low-disk watermark would pause claiming on this 2 MiB filesystem before any log
        // fills it (test/security/disk-watermark.test.ts): here the writes themselves must fail.
        SUPERVISOR_DISK_MIN_FREE: '0',
      });
      await cliJson(['init'], { cwd: dir, env });
      const logs = join(dir, '.supervisor', 'logs');
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', logs]);
      // Lazy: the runner holds its log open until the supervisor has stopped it (cleanups run in reverse).
      cleanups.add(() => void execFileSync('umount', ['-l', logs]));
      await cliJson(['issue', 'add', 'Loud one', '--body', '4096'], {
        cwd: dir,
        env,
      });
      await cliJson(['issue', 'add', 'Loud two', '--body', '1024'], {
        cwd: dir,
        env,
      });
      await start(cleanups, dir, env);
      const finished = await waitFor(
        async () => {
          const l = await cliJson<any[]>(['issue', 'list'], { cwd: dir, env });
          return l.length === 2 &&
            l.every((i) => i.status === 'done' || i.status === 'failed')
            ? l
            : false;
        },
        { timeoutMs: 60_000, what: 'both loud issues finished' },
      );
      const before = await cliJson<any>(['status'], { cwd: dir, env });
      for (const i of finished) {
        const shown = await cliJson<any>(['issue', 'show', String(i.id)], {
          cwd: dir,
          env,
        });
        // The agent's work is kept (its commit is published), and the lost log is on record.
        expect(shown.status, JSON.stringify(shown)).toBe('done');
        expect(shown.error).toMatch(
          /the run log .* could not be written: ENOSPC/,
        );
        expect(shown.runs).toHaveLength(1);
        expect(shown.runs[0]).toMatchObject({
          outcome: 'succeeded',
          error: shown.error,
        });
        expect(git(dir, 'show', `${shown.commit}:out-${i.id}.txt`)).toBe(
          i.title,
        );
      }
      // The runner never died: one agent, no restart.
      expect(before.agents).toHaveLength(1);
      expect(before.agents[0]).toMatchObject({ state: 'idle', restarts: 0 });

      // Free the space: the runner keeps its own log open, so truncate rather than delete it.
      for (const f of readdirSync(join(logs, 'agent-001')))
        rmSync(join(logs, 'agent-001', f));
      truncateSync(join(logs, 'agent-001.log'), 0);
      await cliJson(['issue', 'add', 'Quiet one', '--body', '2'], {
        cwd: dir,
        env,
      });
      const quiet = await waitFor(
        async () => {
          const s = await cliJson<any>(['issue', 'show', '3'], {
            cwd: dir,
            env,
          });
          return s.status === 'done' || s.status === 'failed' ? s : false;
        },
        { what: 'the issue after space was freed' },
      );
      expect(quiet).toMatchObject({ status: 'done', error: null });
      // Both lines, each stamped with the time it arrived.
      expect(readFileSync(quiet.runs[0].logPath, 'utf8')).toMatch(
        new RegExp(`^(\\S+Z ${'x'.repeat(1023)}\\n){2}$`),
      );
      const after = await cliJson<any>(['status'], { cwd: dir, env });
      expect(after.agents[0]).toMatchObject({
        pid: before.agents[0].pid,
        restarts: 0,
      });
      expect(after.issues).toMatchObject({
        in_progress: 0,
        queued: 0,
        open: 0,
        done: 3,
      });
      const tail = await runCli(['logs', 'agent-001', '--lines', '5'], {
        cwd: dir,
        env,
      });
      expect(tail.code).toBe(0);
    });
  },
);
