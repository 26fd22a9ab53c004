import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { isSlotId } from '../../contract/job.js';
import { parseDuration } from '../config.js';
import { openContext } from '../context.js';
import { SupervisorError } from '../errors.js';
import {
  followSlot,
  slotHistory,
  type SlotPosition,
} from '../logs/slot-log.js';
import { wholeNumberFlag } from './args.js';
import type { GlobalOpts } from './output.js';
import { swarmLogs } from './swarm-logs.js';
import { forTerminal } from './terminal.js';

const STAMP = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z) (.*)$/;

/** A log line with the time the runner stamped on it (lines without a stamp inherit one). */
export interface LogLine {
  agentId: string;
  at: number | undefined;
  text: string;
}

export function parseLine(
  agentId: string,
  raw: string,
  previous: number | undefined,
): LogLine {
  const m = STAMP.exec(raw);
  if (!m) return { agentId, at: previous, text: raw };
  return { agentId, at: Date.parse(m[1]!), text: m[2]! };
}

/** `--since 10m`, `--since 2h`, or a date/time (`2026-05-01T10:00`): a time in ms. */
export function sinceFlag(raw: string, now = Date.now()): number {
  const d = parseDuration(raw);
  if (d !== undefined && /[a-z]$/i.test(raw.trim())) return now - d;
  const t = Date.parse(raw);
  if (!Number.isNaN(t) && /\d{4}-\d\d-\d\d/.test(raw)) return t;
  throw new SupervisorError(
    'ERR_SUP_USAGE',
    `--since must be a duration (30s, 10m, 2h) or a date and time, got "${raw}"`,
    { hint: 'e.g. --since 15m, or --since 2026-05-01T10:00' },
  );
}

export function grepFlag(raw: string): RegExp {
  try {
    return new RegExp(raw, 'i');
  } catch (err) {
    throw new SupervisorError(
      'ERR_SUP_USAGE',
      `--grep is not a valid pattern: ${(err as Error).message}`,
      { hint: 'a regular expression, matched case-insensitively' },
    );
  }
}

const COLOURS = [36, 33, 35, 32, 34, 91, 96, 93, 95, 92];

/** How lines are shown: time, agent prefix (when several), colour on a terminal. */
export class LogPrinter {
  constructor(
    private readonly o: {
      prefix: boolean;
      colour: boolean;
      since?: number | undefined;
      grep?: RegExp | undefined;
    },
  ) {}

  private paint(code: number, s: string): string {
    return this.o.colour ? `\x1b[${code}m${s}\x1b[0m` : s;
  }

  accepts(l: LogLine): boolean {
    if (this.o.since !== undefined && (l.at ?? 0) < this.o.since) return false;
    return !this.o.grep || this.o.grep.test(l.text);
  }

  format(l: LogLine): string {
    // A line the runner did not stamp (an older log, a file written by hand) has no time to show.
    const time =
      l.at === undefined
        ? ''
        : `${this.paint(2, new Date(l.at).toTimeString().slice(0, 8))} `;
    const n = Number(l.agentId.slice(-3)) || 0;
    const who = this.o.prefix
      ? `${this.paint(COLOURS[n % COLOURS.length]!, l.agentId)} | `
      : '';
    // Issue text and agent output are escaped (unless --raw) before our own colours go on.
    const text = forTerminal(l.text);
    const body = text.startsWith('--- ')
      ? this.paint(1, text)
      : text.startsWith('[runner] ')
        ? this.paint(2, text)
        : text;
    return `${time}${who}${body}`;
  }
}

function colourWanted(flag: boolean | undefined): boolean {
  if (flag === false) return false;
  if (process.env.NO_COLOR !== undefined && process.env.NO_COLOR !== '')
    return false;
  return process.stdout.isTTY === true;
}

export function registerLogsCommand(
  program: Command,
  globals: () => GlobalOpts,
): void {
  program
    .command('logs')
    .description(
      "show an agent's log, or all agents' logs interleaved by time (agent-00N | …)",
    )
    .argument('[agent]', 'slot id, e.g. agent-001')
    .option('-f, --follow', 'keep printing new lines')
    .option('-n, --lines <n>', 'lines of history (per agent)', '100')
    .option('--since <when>', 'only lines since then: 30s, 10m, 2h, or a date')
    .option('--grep <pattern>', 'only lines matching (regex, any case)')
    .option('--no-color', 'no colours (also NO_COLOR=1; off when not a TTY)')
    .addHelpText(
      'after',
      '\nEach line shows the time it was written. "--- agent-00N issue-N attempt N [file]" lines mark\nwhere an attempt starts, "--- end:" where its agent exited; the agent\'s output in between\nis read from that attempt\'s log (.supervisor/logs/agent-00N/), the one place it is kept.',
    )
    .action(
      async (
        agent: string | undefined,
        o: {
          follow?: boolean;
          lines: string;
          since?: string;
          grep?: string;
          color?: boolean;
        },
      ) => {
        if (agent !== undefined && !isSlotId(agent)) {
          throw new SupervisorError(
            'ERR_SUP_USAGE',
            `"${agent}" is not an agent id`,
            { hint: 'agent ids look like agent-001; see `supervisor status`' },
          );
        }
        const lines = wholeNumberFlag('--lines', o.lines);
        const since = o.since === undefined ? undefined : sinceFlag(o.since);
        const grep = o.grep === undefined ? undefined : grepFlag(o.grep);
        const ctx = await openContext({ repo: globals().repo });
        const { logDir } = ctx.paths;
        ctx.close();
        // Swarm runners keep no log on this machine: the service's logs come from the engine.
        if (ctx.config.runtime === 'swarm')
          return swarmLogs(ctx.paths.repoId, ctx.paths.root, {
            agentId: agent,
            follow: o.follow === true,
            tail: lines,
          });
        const ids = agent
          ? [agent]
          : existsSync(logDir)
            ? readdirSync(logDir)
                .filter((f) => /^agent-\d{3}\.log$/.test(f))
                .map((f) => f.slice(0, -4))
                .sort()
            : [];
        if (agent && !existsSync(join(logDir, `${agent}.log`))) {
          throw new SupervisorError(
            'ERR_SUP_USAGE',
            `${agent} has no log yet`,
            { hint: 'it has not run; see `supervisor status`' },
          );
        }
        const printer = new LogPrinter({
          prefix: !agent,
          colour: colourWanted(o.color),
          since,
          grep,
        });
        const out = (l: LogLine) => {
          if (printer.accepts(l))
            process.stdout.write(`${printer.format(l)}\n`);
        };
        // With a filter, the whole (rotated, so bounded) file is searched, then the last n shown.
        const want =
          since !== undefined || grep ? Number.MAX_SAFE_INTEGER : lines;
        const history: LogLine[] = [];
        const starts: Array<{ id: string; file: string; from: SlotPosition }> =
          [];
        for (const id of ids) {
          const file = join(logDir, `${id}.log`);
          const tail = slotHistory(file, want);
          let at: number | undefined;
          const mine = tail.lines
            .map((raw) => {
              const l = parseLine(id, raw, at);
              at = l.at;
              return l;
            })
            .filter((l) => printer.accepts(l));
          history.push(...mine.slice(-lines));
          starts.push({ id, file, from: tail.position });
        }
        // Several agents: interleaved by time (a stable sort keeps each agent's own order).
        if (ids.length > 1) history.sort((a, b) => (a.at ?? 0) - (b.at ?? 0));
        for (const l of history) out(l);
        if (!o.follow) return;
        const stops = starts.map(({ id, file, from }) => {
          let at: number | undefined;
          return followSlot(file, from, (batch) => {
            for (const raw of batch) {
              const l = parseLine(id, raw, at);
              at = l.at;
              out(l);
            }
          });
        });
        await new Promise<void>((resolve) => {
          process.once('SIGINT', resolve);
          process.once('SIGTERM', resolve);
        });
        for (const stop of stops) stop();
      },
    );
}
