import type { Command } from 'commander';
import { openContext } from '../context.js';
import { SupervisorError } from '../errors.js';
import { checkReadModel, recomputeReadModel } from '../store/read-model.js';
import { printJson, say, type GlobalOpts } from './output.js';

/**
 * `supervisor doctor`: the checks other commands skip to stay fast — the database's integrity
 * (`PRAGMA quick_check`, which reads the whole file) and the kept-up-to-date aggregates against
 * the tables they summarise (`--repair` recomputes them).
 */
export function registerDoctorCommand(
  program: Command,
  globals: () => GlobalOpts,
): void {
  program
    .command('doctor')
    .description(
      'check the supervisor database: integrity (quick_check) and the aggregates status reads',
    )
    .option('--repair', 'recompute the aggregates from the tables')
    .option('--json', 'print JSON')
    .action(async (o: { repair?: boolean; json?: boolean }) => {
      // The integrity check runs in openContext: a damaged file fails here with its hint.
      const ctx = await openContext({ repo: globals().repo, check: true });
      try {
        const schemaVersion = ctx.db.pragma('user_version', {
          simple: true,
        }) as number;
        let problems = checkReadModel(ctx.db);
        const found = problems;
        if (o.repair && problems.length > 0) {
          recomputeReadModel(ctx.db);
          problems = checkReadModel(ctx.db);
        }
        const report = {
          database: ctx.paths.dbFile,
          schemaVersion,
          integrity: 'ok' as const,
          aggregates: found,
          repaired: Boolean(o.repair) && found.length > 0,
          ok: problems.length === 0,
        };
        if (o.json) printJson(report);
        else {
          say(`database ${report.database} (schema ${schemaVersion})`);
          say('integrity: ok');
          if (found.length === 0) say('aggregates: consistent');
          for (const p of found) say(`aggregates: ${p}`);
          if (report.repaired)
            say(
              report.ok
                ? 'aggregates: recomputed'
                : 'aggregates: still inconsistent',
            );
        }
        if (!report.ok)
          throw new SupervisorError(
            'ERR_SUP_DATABASE',
            `${problems.length} aggregate(s) disagree with their tables`,
            { hint: 'run `supervisor doctor --repair` to recompute them' },
          );
      } finally {
        ctx.close();
      }
    });
}
