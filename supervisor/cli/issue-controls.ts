import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { openContext } from '../context.js';
import { SupervisorError } from '../errors.js';
import { IssueControls } from '../issue-controls.js';
import { QueueAccess } from '../queue-access.js';
import type { Issue } from '../store/issues.js';
import { issueSummary, parseIdList, parseIssueId } from './issue-args.js';
import { oneLine, printJson, say, type GlobalOpts } from './output.js';

/** Runs a control with the repository's context and (when Redis answers) its queue. */
async function withControls<T>(
  globals: () => GlobalOpts,
  fn: (c: IssueControls) => Promise<T> | T,
): Promise<T> {
  const ctx = await openContext({ repo: globals().repo });
  const queue = new QueueAccess(ctx);
  try {
    return await fn(new IssueControls(ctx, () => queue.get(), 'cli'));
  } finally {
    await queue.close();
    ctx.close();
  }
}

function report(issues: Issue[], json: boolean | undefined, verb: string) {
  if (json) return printJson(issues.map(issueSummary));
  if (issues.length === 0) return say(`no issues ${verb}`);
  for (const i of issues)
    say(`#${i.id} ${verb}: now ${i.status} · ${oneLine(i.title)}`);
}

export function readBody(o: {
  body?: string;
  bodyFile?: string;
}): Buffer | undefined {
  if (o.body !== undefined && o.bodyFile !== undefined)
    throw new SupervisorError(
      'ERR_SUP_USAGE',
      '--body and --body-file are mutually exclusive',
      { hint: 'pass one of them' },
    );
  if (o.bodyFile !== undefined) {
    try {
      return readFileSync(o.bodyFile === '-' ? 0 : o.bodyFile);
    } catch (cause) {
      throw new SupervisorError(
        'ERR_SUP_USAGE',
        `cannot read --body-file ${o.bodyFile}: ${(cause as Error).message}`,
        { cause },
      );
    }
  }
  return o.body === undefined ? undefined : Buffer.from(o.body, 'utf8');
}

export function registerIssueControlCommands(
  issue: Command,
  globals: () => GlobalOpts,
): void {
  issue
    .command('retry')
    .description(
      'send a failed, conflicting, check-failed, cancelled or blocked issue back to the agents',
    )
    .argument('[id]', 'issue id')
    .option('--failed', 'retry every failed issue')
    .option('--json', 'print the issues as JSON')
    .action(
      async (
        rawId: string | undefined,
        o: { failed?: boolean; json?: boolean },
      ) => {
        if ((rawId === undefined) === (o.failed !== true))
          throw new SupervisorError(
            'ERR_SUP_USAGE',
            'give an issue id or --failed (not both)',
            {
              hint: 'e.g. supervisor issue retry 4, or supervisor issue retry --failed',
            },
          );
        const out = await withControls(globals, (c) =>
          rawId === undefined
            ? c.retryFailed()
            : [c.retry(parseIssueId(rawId))],
        );
        report(out, o.json, 'retried');
      },
    );

  issue
    .command('cancel')
    .description(
      'cancel an issue: its waiting job is removed, a running attempt is stopped and its late result refused',
    )
    .argument('<id>', 'issue id')
    .option('--json', 'print the issue as JSON')
    .action(async (rawId: string, o: { json?: boolean }) => {
      const id = parseIssueId(rawId);
      const out = await withControls(globals, (c) => c.cancel(id));
      report([out], o.json, 'cancelled');
    });

  issue
    .command('reopen')
    .description(
      'work an issue again from scratch, whatever it came to (merged included)',
    )
    .argument('<id>', 'issue id')
    .option('--json', 'print the issue as JSON')
    .action(async (rawId: string, o: { json?: boolean }) => {
      const id = parseIssueId(rawId);
      const out = await withControls(globals, (c) => c.reopen(id));
      report([out], o.json, 'reopened');
    });

  issue
    .command('edit')
    .description(
      "change an issue's title, body or priority (not while an agent works on it; a waiting job changes in place)",
    )
    .argument('<id>', 'issue id')
    .option('--title <title>', 'new title')
    .option('--body <text>', 'new body')
    .option(
      '--body-file <file>',
      'new body from a file, byte-exact ("-" for stdin)',
    )
    .option('--priority <p>', 'urgent | high | medium | low')
    .option(
      '--after <ids>',
      'replace its dependencies (cycles are refused), e.g. --after 12,13',
    )
    .option('--json', 'print the issue as JSON')
    .action(
      async (
        rawId: string,
        o: {
          title?: string;
          body?: string;
          bodyFile?: string;
          priority?: string;
          after?: string;
          json?: boolean;
        },
      ) => {
        const id = parseIssueId(rawId);
        const body = readBody(o);
        const after = o.after === undefined ? undefined : parseIdList(o.after);
        const out = await withControls(globals, (c) =>
          c.edit(id, {
            ...(o.title !== undefined ? { title: o.title } : {}),
            ...(body !== undefined ? { body } : {}),
            ...(o.priority !== undefined ? { priority: o.priority } : {}),
            ...(after !== undefined ? { dependsOn: after } : {}),
          }),
        );
        report([out], o.json, 'edited');
      },
    );
}
