import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  cliJson,
  runCli,
  startSupervisor,
  testEnv,
  waitFor,
  type CliResult,
  type RunningSupervisor,
} from '../helpers/cli.js';
import { tempRepo } from '../helpers/repo.js';

export function hasCommand(cmd: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Cleanups run in reverse order after each test. */
export function cleanupList() {
  const list: Array<() => Promise<void> | void> = [];
  return {
    add: (fn: () => Promise<void> | void) => list.push(fn),
    run: async () => {
      for (const c of list.splice(0).reverse()) {
        try {
          await c();
        } catch (err) {
          console.error('cleanup failed:', err);
        }
      }
    },
  };
}

/**
 * A repository with its own queue prefix and environments off (these tests need no ports or
 * Redis DBs, and leave the shared ones to the suites that test them).
 */
export function isolatedRepo(
  cleanups: ReturnType<typeof cleanupList>,
  extra: Record<string, string> = {},
  config: Record<string, unknown> = {},
) {
  const r = tempRepo();
  cleanups.add(r.cleanup);
  writeFileSync(
    join(r.dir, 'supervisor.config.json'),
    JSON.stringify({ env: { enabled: false }, ...config }),
  );
  execFileSync('git', ['-C', r.dir, 'add', 'supervisor.config.json']);
  execFileSync('git', [
    '-C',
    r.dir,
    '-c',
    'user.name=t',
    '-c',
    'user.email=t@t',
    'commit',
    '-qm',
    'config',
  ]);
  return { dir: r.dir, env: testEnv(extra) };
}

export async function start(
  cleanups: ReturnType<typeof cleanupList>,
  dir: string,
  env: Record<string, string>,
  args: string[] = ['--agents', '1', '--no-dashboard'],
): Promise<RunningSupervisor> {
  const sup = await startSupervisor(dir, env, args);
  cleanups.add(async () => void (await sup.stop()));
  return sup;
}

export async function issues(
  dir: string,
  env: Record<string, string>,
): Promise<any[]> {
  return cliJson<any[]>(['issue', 'list'], { cwd: dir, env });
}

/** Waits until `n` issues exist and none is open, queued or in progress. */
export async function allFinished(
  dir: string,
  env: Record<string, string>,
  n: number,
  timeoutMs = 60_000,
): Promise<any[]> {
  return waitFor(
    async () => {
      const l = await issues(dir, env);
      return l.length === n &&
        l.every((i) => i.status === 'done' || i.status === 'failed')
        ? l
        : false;
    },
    { timeoutMs, what: `${n} issues finished` },
  );
}

/** Runs CLI invocations a few at a time (each is a node process start). */
export async function runAll(
  cases: string[][],
  opts: { cwd: string; env?: Record<string, string> },
  width = 6,
): Promise<CliResult[]> {
  const out: CliResult[] = new Array(cases.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < cases.length) {
        const i = next++;
        out[i] = await runCli(cases[i]!, opts);
      }
    }),
  );
  return out;
}
