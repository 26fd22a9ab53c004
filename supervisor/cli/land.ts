import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { stopSpawnHelper, useSpawnHelper } from '../../git/runner.js';
import { openContext } from '../context.js';
import { SupervisorError } from '../errors.js';
import type { LandOutcome } from '../land/lander.js';
import { createLander } from '../land/service.js';
import { parseIssueId } from './issue-args.js';
import {
  oneLine,
  printJson,
  progress,
  say,
  table,
  type GlobalOpts,
} from './output.js';

export function registerLandCommand(
  program: Command,
  globals: () => GlobalOpts,
): void {
  program
    .command('land')
    .description(
      'land done issues on the base branch, one at a time: rebase (or merge/squash) onto the tip, run land.check, move the base by compare-and-swap',
    )
    .argument('[ids...]', 'issues to land, in this order')
    .option('--all', 'land every done issue, by id')
    .option(
      '--dry-run',
      'say which issues would land and which conflict; change nothing',
    )
    .option('--json', 'print the outcome per issue as JSON')
    .addHelpText(
      'after',
      `
Configuration (supervisor.config.json "land"): strategy rebase|merge|squash, check "<shell command>",
checkTimeout, push "<remote>", auto, onConflict requeue|hold, onCheckFailure requeue|hold, maxRequeues.
The base branch is never overwritten: a base that moved meanwhile means the issue is redone on it.
If the base is checked out in your worktree, it is fast-forwarded there only when it is clean.
A remote-tracking base (baseBranch "origin/main") is fetched first and moved by a leased push.
Exit status: 0 when every issue landed (or, with --dry-run, was looked at), 1 otherwise.
See docs/landing.md.`,
    )
    .action(
      async (
        rawIds: string[],
        o: { all?: boolean; dryRun?: boolean; json?: boolean },
      ) => {
        if (rawIds.length === 0 && !o.all)
          throw new SupervisorError(
            'ERR_SUP_USAGE',
            'name the issues to land, or pass --all',
            {
              hint: 'e.g. supervisor land 3 5, or supervisor land --all --dry-run',
            },
          );
        if (rawIds.length > 0 && o.all)
          throw new SupervisorError(
            'ERR_SUP_USAGE',
            '--all lands every done issue: give either ids or --all',
          );
        const ids = rawIds.map(parseIssueId);
        const ctx = await openContext({ repo: globals().repo });
        // Its git from a small shell, not forks of this process (as `supervisor start` does):
        // a directory of its own, as a running supervisor's helper has one too.
        const helperDir = mkdtempSync(join(ctx.paths.stateDir, 'git-helper-'));
        useSpawnHelper(helperDir);
        try {
          const lander = createLander(ctx, (msg) => {
            if (!o.json) progress(msg);
          });
          const out = await lander.land(o.all ? 'all' : ids, {
            dryRun: o.dryRun === true,
          });
          if (o.json) printJson(out);
          else if (out.length === 0) say('no done issues to land');
          else say(table(out.map(row), ['ID', 'RESULT', 'COMMIT', 'DETAIL']));
          const failed = out.some(
            (r) =>
              r.result !== 'merged' &&
              r.result !== 'would-land' &&
              r.result !== 'would-conflict',
          );
          if (failed && !o.dryRun)
            throw new LandIncomplete(
              out.filter((r) => r.result !== 'merged').length,
            );
        } finally {
          stopSpawnHelper();
          rmSync(helperDir, { recursive: true, force: true });
          ctx.close();
        }
      },
    );
}

function row(r: LandOutcome): string[] {
  return [
    `#${r.issueId}`,
    r.result,
    r.landedSha?.slice(0, 10) ?? '',
    oneLine(
      r.conflictFiles?.length
        ? `conflicts: ${r.conflictFiles.join(' ')}`
        : (r.error ?? (r.redone ? `redone ${r.redone}× (base moved)` : '')),
      100,
    ),
  ];
}

/** Some issues did not land: exit 1 (the table already said which and why). */
class LandIncomplete extends SupervisorError {
  constructor(n: number) {
    super(
      'ERR_SUP_LAND_REFUSED',
      `${n} issue${n === 1 ? '' : 's'} did not land`,
      {
        hint: 'supervisor issue show <id> says why; conflicts and failed checks go back to an agent unless land.onConflict/onCheckFailure is "hold"',
      },
    );
  }
}
