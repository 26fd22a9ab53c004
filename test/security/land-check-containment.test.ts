/**
 * `land.check` runs code an agent wrote on the host: it gets an agent slot's containment. A check
 * that leaves a `setsid` writer, a double-forked writer with an empty environment and a listener
 * on its slot's `$PORT` behind ends with none of them alive and the port free — with the landing
 * slot's cgroup (Linux, cgroup v2 writable) and with tracking only (marker, worktree cwd, port
 * owners). It gets none of the control plane's variables either.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { runCheck } from '../../supervisor/land/check.js';
import { tempDir } from '../helpers/repo.js';
import { randomPortBase } from '../env/helpers.js';

const CHECK = String.raw`
loop='while :; do date >> "$0"; sleep 0.1; done'
W="$PWD"
(cd / && setsid sh -c "$loop" "$W/leak-setsid.txt" </dev/null >/dev/null 2>&1 & echo $! >> pids)
(cd "$W" && env -i PATH="$PATH" setsid sh -c "$loop" leak-fork.txt </dev/null >/dev/null 2>&1 & echo $! >> "$W/pids") &
(cd / && env -i PATH="$PATH" P="$PORT" setsid node -e "require('net').createServer().listen(Number(process.env.P), '0.0.0.0')" </dev/null >/dev/null 2>&1 & echo $! >> "$W/pids") &
wait
for i in $(seq 1 50); do [ -f leak-fork.txt ] && [ -f leak-setsid.txt ] && break; sleep 0.1; done
# The listener is found by its port: the check ends once it listens, as a dev server would.
hex=$(printf '%04X' "$PORT")
for i in $(seq 1 100); do grep -q ":$hex 00000000:0000 0A" /proc/net/tcp && break; sleep 0.1; done
echo "control plane: [$SUPERVISOR_PREFIX] [$REDIS_URL]"
`;

function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

const portFree = (port: number): Promise<boolean> =>
  new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '0.0.0.0', () => s.close(() => resolve(true)));
  });

const saved = process.env.SUPERVISOR_CONTAINMENT;
afterEach(() => {
  if (saved === undefined) delete process.env.SUPERVISOR_CONTAINMENT;
  else process.env.SUPERVISOR_CONTAINMENT = saved;
});

describe('land.check: nothing it starts outlives it', () => {
  it.runIf(process.getuid?.() === 0)(
    "cannot read the supervisor's state directory (root: a mount namespace of its own)",
    async () => {
      const dir = tempDir('sup-land-hide-');
      const state = join(dir, '.supervisor');
      mkdirSync(state);
      writeFileSync(join(state, 'supervisor.db'), 'SECRET-STATE');
      const res = await runCheck({
        command:
          'echo "state: [$(ls -A "$STATE")] [$(cat "$STATE/supervisor.db" 2>&1)]"',
        cwd: dir,
        env: { STATE: state },
        timeoutMs: 60_000,
        logFile: join(dir, 'check.log'),
        slotKey: `test:${process.pid}:land-hide`,
        hide: state,
      });
      expect(res.passed, res.tail).toBe(true);
      expect(res.tail).toMatch(
        /state: \[\] \[cat: .*No such file or directory\]/,
      );
      expect(res.tail).not.toContain('SECRET-STATE');
      // Only the check's view: the file is still there for the supervisor.
      expect(readFileSync(join(state, 'supervisor.db'), 'utf8')).toBe(
        'SECRET-STATE',
      );
    },
    120_000,
  );

  for (const mode of ['cgroup where available', 'tracking'] as const) {
    it(`setsid and double-forked writers and a $PORT listener are gone when it ends (${mode})`, async () => {
      if (mode === 'tracking') process.env.SUPERVISOR_CONTAINMENT = 'tracking';
      else delete process.env.SUPERVISOR_CONTAINMENT;
      const dir = tempDir('sup-land-check-');
      const port = randomPortBase();
      const prev = {
        prefix: process.env.SUPERVISOR_PREFIX,
        redis: process.env.REDIS_URL,
      };
      process.env.SUPERVISOR_PREFIX = 'secret-prefix';
      process.env.REDIS_URL = 'redis://:queue-password@127.0.0.1:6379';
      let res;
      try {
        res = await runCheck({
          command: CHECK,
          cwd: dir,
          env: { PORT: String(port) },
          timeoutMs: 60_000,
          logFile: join(dir, 'check.log'),
          slotKey: `test:${process.pid}:land-${mode}`,
        });
      } finally {
        for (const [k, v] of [
          ['SUPERVISOR_PREFIX', prev.prefix],
          ['REDIS_URL', prev.redis],
        ] as const)
          if (v === undefined) delete process.env[k];
          else process.env[k] = v;
      }
      expect(res.passed, res.tail).toBe(true);
      expect(res.tail).toMatch(/control plane: \[\] \[\]/);
      const pids = readFileSync(join(dir, 'pids'), 'utf8')
        .split('\n')
        .filter(Boolean)
        .map(Number);
      expect(pids).toHaveLength(3);
      expect(pids.filter(alive)).toEqual([]);
      expect(await portFree(port)).toBe(true);
      // Nothing writes any more.
      const size = readFileSync(join(dir, 'leak-fork.txt')).length;
      await new Promise((r) => setTimeout(r, 500));
      expect(readFileSync(join(dir, 'leak-fork.txt')).length).toBe(size);
    }, 120_000);
  }
});
