import type { Command } from 'commander';
import { openContext } from '../context.js';
import { restartAgent } from '../restart.js';
import { requestRestart } from '../scaler.js';
import { secondsFlag } from './args.js';
import { redisFor } from './connect.js';
import { printJson, progress, say, type GlobalOpts } from './output.js';

export function registerRestartCommand(
  program: Command,
  globals: () => GlobalOpts,
): void {
  program
    .command('restart')
    .description(
      'restart one agent: its runner hands its job back unspent and starts again; a quarantined slot is re-created and taken off quarantine',
    )
    .argument('<agent>', 'the agent to restart, e.g. agent-002')
    .option('--timeout <seconds>', 'give up waiting after this long', '180')
    .option('--no-wait', 'return once the restart is asked for')
    .option('--json', 'print the restarted agent as JSON')
    .addHelpText(
      'after',
      '\nA slot is quarantined when it stays broken after the supervisor re-created its worktree\nand environment (a crash loop, a worktree git cannot use): see `supervisor status` and\n`supervisor logs <agent>`, fix the cause, then restart it. `scale N` revives all of them.',
    )
    .action(
      async (
        agentId: string,
        o: { timeout: string; wait: boolean; json?: boolean },
      ) => {
        const timeoutS = secondsFlag('--timeout', o.timeout);
        const ctx = await openContext({ repo: globals().repo });
        const redis = await redisFor(ctx);
        try {
          const agent = await restartAgent(
            ctx,
            redis,
            agentId,
            (id) => requestRestart(ctx.db, id),
            {
              wait: o.wait,
              timeoutMs: timeoutS * 1000,
              onChange: (a) => {
                if (!o.json) progress(`  ${a.id}: ${a.state}`);
              },
            },
          );
          if (o.json)
            printJson({
              agentId,
              restarted: Boolean(agent),
              agent: agent ?? null,
            });
          else
            say(
              agent
                ? `${agentId} restarted (${agent.state})`
                : `asked to restart ${agentId}`,
            );
        } finally {
          redis?.disconnect();
          ctx.close();
        }
      },
    );
}
