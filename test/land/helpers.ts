import type { useCleanups } from '../helpers/cleanup.js';
import {
  cliJson,
  runCli,
  startSupervisor,
  testEnv,
  waitFor,
  type RunningSupervisor,
} from '../helpers/cli.js';
import { tempRepo } from '../helpers/repo.js';

export type IssueJson = {
  id: number;
  status: string;
  branch: string | null;
  commit: string | null;
  landedSha: string | null;
  landAttempts: number;
  requeues: number;
  behind: number | null;
  mergeable: boolean | null;
  conflictFiles: string[];
  attempts: number;
  error?: string | null;
  history?: Array<{
    from: string | null;
    to: string;
    actor: string;
    reason: string | null;
    at: number;
  }>;
  landings?: any[];
  runs?: any[];
};

/** A temp repo, a fresh queue prefix, and helpers to drive the CLI in it. */
export function landingWorld(
  cleanups: ReturnType<typeof useCleanups>,
  extraEnv: Record<string, string> = {},
) {
  const repo = tempRepo();
  cleanups.push(repo.cleanup);
  const env = testEnv(extraEnv);
  const dir = repo.dir;
  return {
    dir,
    env,
    cli: (args: string[], more: Record<string, string> = {}) =>
      runCli(args, { cwd: dir, env: { ...env, ...more }, timeoutMs: 120_000 }),
    json: <T = any>(args: string[]) => cliJson<T>(args, { cwd: dir, env }),
    list: () => cliJson<IssueJson[]>(['issue', 'list'], { cwd: dir, env }),
    show: (id: number) =>
      cliJson<IssueJson>(['issue', 'show', String(id)], { cwd: dir, env }),
    add: async (title: string, body: string, extra: string[] = []) => {
      const r = await runCli(
        ['issue', 'add', title, '--body', body, '--json', ...extra],
        { cwd: dir, env },
      );
      if (r.code !== 0) throw new Error(`issue add: ${r.stderr}`);
      return (JSON.parse(r.stdout) as { id: number }).id;
    },
    start: async (
      args: string[] = ['--agents', '2'],
      more: Record<string, string> = {},
    ) => {
      const sup: RunningSupervisor = await startSupervisor(
        dir,
        { ...env, ...more },
        args,
      );
      cleanups.push(async () => void (await sup.stop()));
      return sup;
    },
    waitStatus: (id: number, statuses: string[], timeoutMs = 60_000) =>
      waitFor(
        async () => {
          const i = await cliJson<IssueJson>(['issue', 'show', String(id)], {
            cwd: dir,
            env,
          });
          return statuses.includes(i.status) ? i : false;
        },
        { timeoutMs, what: `issue #${id} ${statuses.join('|')}` },
      ),
  };
}
