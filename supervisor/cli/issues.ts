import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { SupervisorError } from '../errors.js';
import { openContext } from '../context.js';
import {
  ISSUE_STATUSES,
  type Issue,
  type IssueStatus,
} from '../store/issues.js';
import { LandingStore } from '../land/landings.js';
import { refreshMergeStates } from '../land/merge-state.js';
import { issueHistory } from '../store/history.js';
import { oneLine, printJson, say, table, type GlobalOpts } from './output.js';

export function issueSummary(i: Issue) {
  return {
    id: i.id,
    title: i.title,
    priority: i.priority,
    status: i.status,
    agent: i.agent,
    branch: i.branch,
    commit: i.commit,
    attempts: i.attempts,
    landedSha: i.landedSha,
    landAttempts: i.landAttempts,
    requeues: i.requeues,
    behind: i.behind,
    mergeable: i.mergeable,
    conflictFiles: i.conflictFiles,
  };
}

/** "yes", "no" (conflicts), or blank when not known (not done, or not computed yet). */
function mergeableCell(i: ReturnType<typeof issueSummary>): string {
  if (i.status !== 'done' || i.mergeable === null) return '';
  return i.mergeable ? 'yes' : 'CONFLICT';
}

function bodyOut(b: Buffer): string {
  const text = b.toString('utf8');
  return Buffer.from(text, 'utf8').equals(b)
    ? text
    : `base64:${b.toString('base64')}`;
}

export function parseIssueId(raw: string): number {
  // Beyond 2^53 a number is rounded: 9007199254740993 would show issue 9007199254740992.
  if (
    !/^\d+$/.test(raw.trim()) ||
    Number(raw) < 1 ||
    !Number.isSafeInteger(Number(raw))
  ) {
    throw new SupervisorError(
      'ERR_SUP_USAGE',
      `issue id must be a positive whole number (at most ${Number.MAX_SAFE_INTEGER}), got "${raw}"`,
      { hint: 'e.g. supervisor issue show 3' },
    );
  }
  return Number(raw);
}

export function registerIssueCommands(
  program: Command,
  globals: () => GlobalOpts,
): void {
  const issue = program
    .command('issue')
    .description('add, list and show issues');

  issue
    .command('add')
    .description('add an open issue for the agents')
    .argument('<title>', 'one-line title')
    .option('--body <text>', 'issue body (markdown)')
    .option(
      '--body-file <file>',
      'read the body from a file, byte-exact ("-" for stdin)',
    )
    .option('--priority <p>', 'urgent | high | medium | low', 'medium')
    .option('--json', 'print the issue as JSON')
    .action(
      async (
        title: string,
        o: {
          body?: string;
          bodyFile?: string;
          priority: string;
          json?: boolean;
        },
      ) => {
        if (o.body !== undefined && o.bodyFile !== undefined) {
          throw new SupervisorError(
            'ERR_SUP_USAGE',
            '--body and --body-file are mutually exclusive',
            { hint: 'pass one of them' },
          );
        }
        let body: Buffer | undefined;
        if (o.bodyFile !== undefined) {
          try {
            body = readFileSync(o.bodyFile === '-' ? 0 : o.bodyFile);
          } catch (cause) {
            throw new SupervisorError(
              'ERR_SUP_USAGE',
              `cannot read --body-file ${o.bodyFile}: ${(cause as Error).message}`,
              { cause },
            );
          }
        } else if (o.body !== undefined) body = Buffer.from(o.body, 'utf8');
        const ctx = await openContext({ repo: globals().repo, init: true });
        try {
          const created = ctx.issues.add({
            title,
            ...(body ? { body } : {}),
            priority: o.priority,
          });
          if (o.json)
            printJson({
              id: created.id,
              title: created.title,
              priority: created.priority,
              status: created.status,
            });
          else
            say(
              `added issue #${created.id} [${created.priority}] ${oneLine(created.title)}`,
            );
        } finally {
          ctx.close();
        }
      },
    );

  issue
    .command('list')
    .description('list issues')
    .option(
      '--status <s>',
      `only issues in this status (${ISSUE_STATUSES.join(', ')})`,
    )
    .option('--json', 'print JSON')
    .action(async (o: { status?: string; json?: boolean }) => {
      if (
        o.status !== undefined &&
        !(ISSUE_STATUSES as readonly string[]).includes(o.status)
      ) {
        throw new SupervisorError(
          'ERR_SUP_USAGE',
          `unknown status "${o.status}"`,
          { hint: `use one of: ${ISSUE_STATUSES.join(', ')}` },
        );
      }
      const ctx = await openContext({ repo: globals().repo });
      try {
        // behind/mergeable of done issues against the current base tip (only stale ones).
        await refreshMergeStates(ctx).catch(() => 0);
        const list = ctx.issues
          .list(o.status ? { status: o.status as IssueStatus } : {})
          .map(issueSummary);
        if (o.json) return printJson(list);
        if (list.length === 0) return say('no issues');
        say(
          table(
            list.map((i) => [
              `#${i.id}`,
              i.priority,
              i.status,
              i.agent ?? '',
              i.branch ?? '',
              i.commit?.slice(0, 8) ?? '',
              i.status === 'done' && i.behind !== null ? String(i.behind) : '',
              mergeableCell(i),
              oneLine(i.title),
            ]),
            [
              'ID',
              'PRIORITY',
              'STATUS',
              'AGENT',
              'BRANCH',
              'COMMIT',
              'BEHIND',
              'MERGEABLE',
              'TITLE',
            ],
          ),
        );
      } finally {
        ctx.close();
      }
    });

  issue
    .command('show')
    .description('show an issue and its runs')
    .argument('<id>', 'issue id')
    .option('--json', 'print JSON')
    .action(async (rawId: string, o: { json?: boolean }) => {
      const id = parseIssueId(rawId);
      const ctx = await openContext({ repo: globals().repo });
      try {
        await refreshMergeStates(ctx).catch(() => 0);
        const i = ctx.issues.require(id);
        const runs = ctx.runs.forIssue(id);
        const history = issueHistory(ctx.db, id);
        const landings = new LandingStore(ctx.db).forIssue(id);
        if (o.json)
          return printJson({
            ...issueSummary(i),
            body: bodyOut(i.body),
            error: i.error,
            createdAt: i.createdAt,
            updatedAt: i.updatedAt,
            runs,
            landings,
            history,
          });
        say(`#${i.id} ${i.title}`);
        say(
          `priority ${i.priority} · status ${i.status}${i.agent ? ` · agent ${i.agent}` : ''}${i.branch ? ` · branch ${i.branch} @ ${i.commit?.slice(0, 10)}` : ''}`,
        );
        if (i.landedSha) say(`landed as ${i.landedSha.slice(0, 10)}`);
        else if (i.status === 'done' && i.behind !== null)
          say(
            `behind the base by ${i.behind} commit${i.behind === 1 ? '' : 's'} · ${i.mergeable ? 'merges cleanly' : `conflicts in ${i.conflictFiles.join(', ')}`}`,
          );
        if (i.error) say(`error: ${i.error}`);
        if (i.body.length) say(`\n${bodyOut(i.body)}\n`);
        if (runs.length) {
          say(
            table(
              runs.map((r) => [
                String(r.attempt),
                r.agent ?? '',
                r.outcome,
                r.exitCode === null ? '' : String(r.exitCode),
                r.commitSha?.slice(0, 8) ?? '',
                r.durationMs === null
                  ? ''
                  : `${(r.durationMs / 1000).toFixed(1)}s`,
                r.error ?? '',
                r.logPath ?? '',
              ]),
              [
                'ATTEMPT',
                'AGENT',
                'OUTCOME',
                'EXIT',
                'COMMIT',
                'TIME',
                'ERROR',
                'LOG',
              ],
            ),
          );
        }
        if (landings.length)
          say(
            table(
              landings.map((l) => [
                String(l.attempt),
                l.state,
                l.strategy,
                l.landedSha?.slice(0, 8) ?? '',
                l.conflictFiles.join(' ') || oneLine(l.error ?? ''),
              ]),
              ['LANDING', 'STATE', 'STRATEGY', 'LANDED', 'DETAIL'],
            ),
          );
        say(
          table(
            history.map((h) => [
              new Date(h.at).toISOString().replace('T', ' ').slice(0, 19),
              `${h.from ?? '(new)'} → ${h.to}`,
              h.actor,
              oneLine(h.reason ?? ''),
            ]),
            ['WHEN', 'CHANGE', 'BY', 'WHY'],
          ),
        );
      } finally {
        ctx.close();
      }
    });
}
