import {
  closeSync,
  existsSync,
  openSync,
  readSync,
  readdirSync,
  statSync,
} from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { isSlotId } from '../../contract/job.js';
import { openContext } from '../context.js';
import { SupervisorError } from '../errors.js';
import { wholeNumberFlag } from './args.js';
import type { GlobalOpts } from './output.js';
import { swarmLogs } from './swarm-logs.js';
import { forTerminal } from './terminal.js';

/** The last `n` lines of a file, read from its end (logs can be large). */
export function tailLines(
  file: string,
  n: number,
): { lines: string[]; size: number } {
  if (!existsSync(file)) return { lines: [], size: 0 };
  const size = statSync(file).size;
  // slice(-0) would be the whole file.
  if (n <= 0) return { lines: [], size };
  const fd = openSync(file, 'r');
  try {
    let pos = size;
    let text = '';
    const chunk = Buffer.alloc(64 * 1024);
    while (pos > 0 && text.split('\n').length <= n + 1) {
      const len = Math.min(chunk.length, pos);
      pos -= len;
      readSync(fd, chunk, 0, len, pos);
      text = chunk.subarray(0, len).toString('utf8') + text;
    }
    const lines = text.split('\n');
    if (lines[lines.length - 1] === '') lines.pop();
    return { lines: lines.slice(-n), size };
  } finally {
    closeSync(fd);
  }
}

/** Follows files like `tail -f`, calling `onLine` for each new complete line. */
export function follow(
  files: Array<{ file: string; from: number }>,
  onLine: (file: string, line: string) => void,
): () => void {
  const state = files.map((f) => ({ ...f, rest: '' }));
  const timer = setInterval(() => {
    for (const s of state) {
      if (!existsSync(s.file)) continue;
      const size = statSync(s.file).size;
      if (size < s.from) s.from = 0; // truncated or rotated
      if (size === s.from) continue;
      const fd = openSync(s.file, 'r');
      const buf = Buffer.alloc(size - s.from);
      readSync(fd, buf, 0, buf.length, s.from);
      closeSync(fd);
      s.from = size;
      const parts = (s.rest + buf.toString('utf8')).split('\n');
      s.rest = parts.pop() ?? '';
      for (const line of parts) onLine(s.file, line);
    }
  }, 200);
  return () => clearInterval(timer);
}

export function registerLogsCommand(
  program: Command,
  globals: () => GlobalOpts,
): void {
  program
    .command('logs')
    .description(
      "show an agent's log, or all agents' logs interleaved (agent-00N | …)",
    )
    .argument('[agent]', 'slot id, e.g. agent-001')
    .option('-f, --follow', 'keep printing new lines')
    .option('-n, --lines <n>', 'lines of history per agent', '100')
    .action(
      async (
        agent: string | undefined,
        o: { follow?: boolean; lines: string },
      ) => {
        if (agent !== undefined && !isSlotId(agent)) {
          throw new SupervisorError(
            'ERR_SUP_USAGE',
            `"${agent}" is not an agent id`,
            { hint: 'agent ids look like agent-001; see `supervisor status`' },
          );
        }
        const lines = wholeNumberFlag('--lines', o.lines);
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
        const prefix = (id: string) => (agent ? '' : `${id} | `);
        const starts: Array<{ file: string; from: number }> = [];
        for (const id of ids) {
          const file = join(logDir, `${id}.log`);
          const tail = tailLines(file, lines);
          const size = tail.size;
          for (const l of tail.lines)
            process.stdout.write(`${prefix(id)}${forTerminal(l)}\n`);
          starts.push({ file, from: size });
        }
        if (!o.follow) return;
        const stop = follow(starts, (file, line) => {
          const id = file.slice(logDir.length + 1, -4);
          process.stdout.write(`${prefix(id)}${forTerminal(line)}\n`);
        });
        await new Promise<void>((resolve) => {
          process.once('SIGINT', resolve);
          process.once('SIGTERM', resolve);
        });
        stop();
      },
    );
}
