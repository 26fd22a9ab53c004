/**
 * What happened to each chaos issue, judged without the supervisor's SQLite: from the scripted
 * agent's own record of its attempts (with exit codes, in a file the supervisor never touches)
 * and from git (the published `issue/<id>` branch, its commits, its reflog, the file the agent
 * wrote). The SQLite views are compared against this elsewhere; this is the ground truth.
 */
import { execFileSync } from 'node:child_process';
import type { Attempt } from '../helpers/agent-record.js';

export type ScriptKind = 'ok' | 'fail' | 'hang';

export interface Evidence {
  /** Work that should exist and does not (or cannot be traced to a finished attempt). */
  lost: string[];
  /** Work published more than once. */
  duplicated: string[];
  /** Work that should not exist, or agents that ended other than scripted. */
  wrong: string[];
  /** Issues whose agent finished successfully more than once (at-least-once; not a failure). */
  repeated: number;
}

function gitOut(dir: string, args: string[]): string | undefined {
  try {
    return execFileSync('git', args, {
      cwd: dir,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    }).trim();
  } catch {
    return undefined;
  }
}

export function judgeFromRecordAndGit(
  dir: string,
  base: string,
  scripts: ReadonlyMap<string, ScriptKind>,
  attempts: Attempt[],
): Evidence {
  const e: Evidence = { lost: [], duplicated: [], wrong: [], repeated: 0 };
  for (const [id, kind] of scripts) {
    const mine = attempts.filter((a) => a.issue === id);
    const ok = mine.filter((a) => a.closedBy === 'end' && a.exit === 0);
    if (ok.length > 1) e.repeated += 1;
    const ref = `refs/heads/issue/${id}`;
    const tip = gitOut(dir, ['rev-parse', '--verify', '-q', `${ref}^{commit}`]);
    if (!mine.length) {
      e.lost.push(`#${id} (${kind}): no agent ever started on it`);
      continue;
    }
    if (kind !== 'ok') {
      if (tip) e.wrong.push(`#${id} (${kind}): published as ${ref}`);
      if (ok.length)
        e.wrong.push(`#${id} (${kind}): an agent exited 0 (scripted not to)`);
      if (kind === 'fail' && !mine.some((a) => a.exit === 5))
        e.lost.push(`#${id} (fail): no attempt ran to its scripted exit 5`);
      continue;
    }
    if (!tip) {
      e.lost.push(
        `#${id}: no ${ref} in git (${ok.length} attempt(s) exited 0 by the agent's record)`,
      );
      continue;
    }
    const commits = Number(
      gitOut(dir, ['rev-list', '--count', `${base}..${tip}`]) ?? NaN,
    );
    if (commits === 0) e.lost.push(`#${id}: ${ref} has no commit of its own`);
    else if (commits !== 1)
      e.duplicated.push(`#${id}: ${commits} commits on ${ref}`);
    const moves = gitOut(dir, ['reflog', 'show', '--format=%H', ref]);
    const published = moves ? moves.split('\n').length : 0;
    if (published > 1)
      e.duplicated.push(`#${id}: ${ref} published ${published} times`);
    // The agent writes "<agent> resolved <id>: <title>"; that agent must have finished.
    const file = gitOut(dir, ['show', `${tip}:issue-${id}.txt`]);
    const by = file && new RegExp(`^(\\S+) resolved ${id}: `).exec(file)?.[1];
    if (!by) e.lost.push(`#${id}: ${ref} lacks the agent's issue-${id}.txt`);
    else if (!ok.some((a) => a.agent === by))
      e.lost.push(
        `#${id}: ${ref} holds work of ${by}, which never exited 0 on it by its own record`,
      );
  }
  return e;
}
