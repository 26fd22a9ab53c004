import type { Run } from '../store/runs.js';
import { describeUsage, sumUsage } from '../../contract/usage-text.js';
import { usageOfIssues, type UsageTotals } from '../store/usage-totals.js';
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { SupervisorError } from '../errors.js';
import { openContext, type Context } from '../context.js';
import {
  ISSUE_STATUSES,
  type Issue,
  type IssueStatus,
} from '../store/issues.js';
import { LandingStore } from '../land/landings.js';
import { DependencyStore, dependencyGate } from '../store/deps.js';
import { registerIssueControlCommands } from './issue-controls.js';
import { issueSummary, parseIdList, parseIssueId } from './issue-args.js';
import { refreshMergeStates } from '../land/merge-state.js';
import { issueHistory } from '../store/history.js';
import { redactSecrets } from '../errors.js';
import {
  oneLine,
  printJson,
  progress,
  say,
  table,
  type GlobalOpts,
} from './output.js';

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

const DEFAULT_LIST_LIMIT = 100;

/** `--since`: an age (`90s`, `30m`, `2h`, `7d`) or anything Date.parse reads. */
export function parseSince(raw: string, now = Date.now()): number {
  const age = /^(\d+)\s*(s|m|h|d)$/.exec(raw.trim());
  if (age) {
    const unit = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[
      age[2] as 's' | 'm' | 'h' | 'd'
    ];
    return now - Number(age[1]) * unit;
  }
  const t = Date.parse(raw);
  if (Number.isNaN(t))
    throw new SupervisorError(
      'ERR_SUP_USAGE',
      `--since must be a date/time or an age, got "${raw}"`,
      { hint: 'e.g. --since 2h, --since 7d, --since 2026-01-31T12:00:00Z' },
    );
  return t;
}

function parseCount(raw: string, what: string): number {
  if (!/^\d+$/.test(raw.trim()) || !Number.isSafeInteger(Number(raw)))
    throw new SupervisorError(
      'ERR_SUP_USAGE',
      `${what} must be a whole number, got "${raw}"`,
      { hint: `e.g. ${what} 50` },
    );
  return Number(raw);
}

interface ListQuery {
  status?: IssueStatus;
  since?: number;
  limit: number;
  before?: number;
}

function parseListQuery(o: {
  status?: string;
  since?: string;
  limit?: string;
  before?: string;
}): ListQuery {
  if (
    o.status !== undefined &&
    !(ISSUE_STATUSES as readonly string[]).includes(o.status)
  ) {
    throw new SupervisorError('ERR_SUP_USAGE', `unknown status "${o.status}"`, {
      hint: `use one of: ${ISSUE_STATUSES.join(', ')}`,
    });
  }
  return {
    ...(o.status ? { status: o.status as IssueStatus } : {}),
    ...(o.since !== undefined ? { since: parseSince(o.since) } : {}),
    limit:
      o.limit === undefined
        ? DEFAULT_LIST_LIMIT
        : parseCount(o.limit, '--limit'),
    ...(o.before !== undefined ? { before: parseIssueId(o.before) } : {}),
  };
}

/** Writes and waits when the pipe is full, so a long list never piles up in memory. */
function write(text: string): Promise<void> | undefined {
  if (process.stdout.write(text)) return undefined;
  return new Promise((resolve) => process.stdout.once('drain', resolve));
}

const LIST_HEADER = [
  'ID',
  'PRIORITY',
  'STATUS',
  'AGENT',
  'BRANCH',
  'COMMIT',
  'BEHIND',
  'MERGEABLE',
  'COST',
  'TITLE',
];
const listRow = (
  issue: Issue,
  waitingFor: (id: number) => number[] = () => [],
  usage?: UsageTotals,
): string[] => {
  const i = issueSummary(issue);
  const after = i.status === 'open' ? waitingFor(i.id).map((n) => `#${n}`) : [];
  return [
    `#${i.id}`,
    i.priority,
    after.length ? `open (after ${after.join(',')})` : i.status,
    i.agent ?? '',
    i.branch ?? '',
    i.commit?.slice(0, 8) ?? '',
    i.status === 'done' && i.behind !== null ? String(i.behind) : '',
    mergeableCell(i),
    usage ? describeUsage(usage) : '',
    oneLine(i.title),
  ];
};
/** Column widths for a streamed table, where the widest row is not known in advance. */
const STREAM_WIDTHS = [7, 8, 12, 9, 12, 8, 6, 9, 8];
const padded = (cells: string[]) =>
  cells
    .map((c, n) => (n === cells.length - 1 ? c : c.padEnd(STREAM_WIDTHS[n]!)))
    .join('  ');

/**
 * Prints issues in id order. A bounded page (the newest `limit`) is read newest first (one row
 * more, to know whether older ones exist) and printed reversed; `--limit 0` streams every match
 * straight from SQLite, row by row, waiting on a full pipe.
 */
async function printIssueList(
  ctx: Context,
  q: ListQuery,
  json: boolean,
): Promise<void> {
  const issues = ctx.issues;
  const deps = new DependencyStore(ctx.db);
  const gate = dependencyGate(ctx.config);
  const waitingFor = (id: number) => deps.waitingFor(id, gate);
  let rows: Iterable<Issue>;
  let more = false;
  if (q.limit === 0) {
    // behind/mergeable of done issues against the current base tip (only stale ones).
    await refreshMergeStates(ctx).catch(() => 0);
    rows = issues.page({ ...q, limit: -1, order: 'asc' });
  } else {
    const read = () => [
      ...issues.page({ ...q, limit: q.limit + 1, order: 'desc' }),
    ];
    let newest = read();
    // behind/mergeable of the done issues shown (only stale ones): the page, not the history.
    const done = newest.filter((i) => i.status === 'done').map((i) => i.id);
    if (
      done.length > 0 &&
      (await refreshMergeStates(ctx, { ids: done }).catch(() => 0)) > 0
    )
      newest = read();
    more = newest.length > q.limit;
    rows = newest.slice(0, q.limit).reverse();
    if (!json && newest.length > 0) {
      const page = rows as Issue[];
      const usage = usageOfIssues(
        ctx.db,
        page.map((i) => i.id),
      );
      say(
        table(
          page.map((i) => listRow(i, waitingFor, usage.get(i.id))),
          LIST_HEADER,
        ),
      );
      const total = sumUsage([...usage.values()]);
      if (total.runs)
        say(
          `total: ${describeUsage(total)} over ${total.runs} run(s) of the ${page.length} issue(s) shown`,
        );
      rows = [];
      if (more)
        progress(
          `older issues: supervisor issue list --before ${page[0]!.id}${q.limit === DEFAULT_LIST_LIMIT ? '' : ` --limit ${q.limit}`}${q.status ? ` --status ${q.status}` : ''}${q.since === undefined ? '' : ` --since ${new Date(q.since).toISOString()}`}`,
        );
      return;
    }
  }
  let first = true;
  for (const i of rows) {
    const usage = usageOfIssues(ctx.db, [i.id]).get(i.id);
    if (json)
      await write(
        `${first ? '[\n' : ',\n'}${redactSecrets(JSON.stringify({ ...issueSummary(i), usage: usage ?? null }, null, 2)).replace(/^/gm, '  ')}`,
      );
    else {
      if (first) await write(`${padded(LIST_HEADER)}\n`);
      await write(`${padded(listRow(i, waitingFor, usage))}\n`);
    }
    first = false;
  }
  if (json) await write(first ? '[]\n' : '\n]\n');
  else if (first) say('no issues');
}

export function registerIssueCommands(
  program: Command,
  globals: () => GlobalOpts,
): void {
  const issue = program
    .command('issue')
    .description('add, list, show, retry, cancel, edit and reopen issues');
  registerIssueControlCommands(issue, globals);

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
    .option(
      '--after <ids>',
      'not worked until these issues are merged (or done when nothing lands), e.g. --after 12,13',
    )
    .option('--json', 'print the issue as JSON')
    .action(
      async (
        title: string,
        o: {
          body?: string;
          bodyFile?: string;
          priority: string;
          after?: string;
          json?: boolean;
        },
      ) => {
        const after = o.after === undefined ? [] : parseIdList(o.after);
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
          const created = ctx.db.transaction(() => {
            const i = ctx.issues.add({
              title,
              ...(body ? { body } : {}),
              priority: o.priority,
            });
            if (after.length) new DependencyStore(ctx.db).set(i.id, after);
            return i;
          })();
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
    .description(
      'list issues: the newest --limit (default 100) in id order; --before pages back',
    )
    .option(
      '--status <s>',
      `only issues in this status (${ISSUE_STATUSES.join(', ')})`,
    )
    .option(
      '--since <time>',
      'only issues updated since then: an ISO date/time or an age (30m, 2h, 7d)',
    )
    .option(
      '--limit <n>',
      `at most n issues, the newest (default ${DEFAULT_LIST_LIMIT}; 0 = all, streamed)`,
    )
    .option(
      '--before <id>',
      'the cursor: only issues with a lower id (the next page after the first id shown)',
    )
    .option('--json', 'print JSON (an array of issues)')
    .action(
      async (o: {
        status?: string;
        since?: string;
        limit?: string;
        before?: string;
        json?: boolean;
      }) => {
        const q = parseListQuery(o);
        const ctx = await openContext({ repo: globals().repo });
        try {
          await printIssueList(ctx, q, Boolean(o.json));
        } finally {
          ctx.close();
        }
      },
    );

  issue
    .command('show')
    .description('show an issue and its runs')
    .argument('<id>', 'issue id')
    .option('--json', 'print JSON')
    .action(async (rawId: string, o: { json?: boolean }) => {
      const id = parseIssueId(rawId);
      const ctx = await openContext({ repo: globals().repo });
      try {
        await refreshMergeStates(ctx, { ids: [id] }).catch(() => 0);
        const i = ctx.issues.require(id);
        const runs = ctx.runs.forIssue(id);
        const history = issueHistory(ctx.db, id);
        const landings = new LandingStore(ctx.db).forIssue(id);
        const deps = new DependencyStore(ctx.db);
        const dependsOn = deps.dependsOn(id);
        const waitingFor = deps.waitingFor(id, dependencyGate(ctx.config));
        if (o.json)
          return printJson({
            ...issueSummary(i),
            usage: usageOfIssues(ctx.db, [id]).get(id) ?? null,
            dependsOn,
            waitingFor,
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
        if (dependsOn.length)
          say(
            `after ${dependsOn.map((n) => `#${n}`).join(', ')}${waitingFor.length ? ` (waiting for ${waitingFor.map((n) => `#${n}`).join(', ')})` : ''}`,
          );
        if (i.landedSha) say(`landed as ${i.landedSha.slice(0, 10)}`);
        else if (i.status === 'done' && i.behind !== null)
          say(
            `behind the base by ${i.behind} commit${i.behind === 1 ? '' : 's'} · ${i.mergeable ? 'merges cleanly' : `conflicts in ${i.conflictFiles.join(', ')}`}`,
          );
        // The kind is the stable code of why the last failed attempt failed (contract/errors.ts).
        const lastKind = [...runs]
          .reverse()
          .find((r) => r.errorKind)?.errorKind;
        if (i.error)
          say(`error${lastKind ? ` (${lastKind})` : ''}: ${i.error}`);
        if (i.body.length) say(`\n${bodyOut(i.body)}\n`);
        const usage = usageOfIssues(ctx.db, [id]).get(id);
        if (usage)
          say(`cost: ${describeUsage(usage)} over ${usage.runs} run(s)`);
        if (runs.length) {
          say(
            table(
              runs.map((r) => [
                String(r.attempt),
                r.agent ?? '',
                r.outcome,
                r.errorKind ?? '',
                r.exitCode === null ? '' : String(r.exitCode),
                r.commitSha?.slice(0, 8) ?? '',
                r.durationMs === null
                  ? ''
                  : `${(r.durationMs / 1000).toFixed(1)}s`,
                runCost(r),
                oneLine(r.error ?? '', 100),
                r.logPath ?? '',
              ]),
              [
                'ATTEMPT',
                'AGENT',
                'OUTCOME',
                'KIND',
                'EXIT',
                'COMMIT',
                'TIME',
                'COST',
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

/** "$0.0123 · 5.9k tok" for a run whose agent printed usage; empty otherwise. */
function runCost(r: Run): string {
  if (r.inputTokens === null && r.costUsd === null) return '';
  return describeUsage({
    costUsd: r.costUsd ?? 0,
    inputTokens: r.inputTokens ?? 0,
    outputTokens: r.outputTokens ?? 0,
    cacheReadTokens: r.cacheReadTokens ?? 0,
    cacheWriteTokens: r.cacheWriteTokens ?? 0,
  });
}
