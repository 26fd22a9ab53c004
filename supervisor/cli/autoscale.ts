import type { Context } from '../context.js';
import {
  DEFAULT_IDLE_GRACE_MS,
  parseAutoscaleRange,
  writeAutoscale,
} from '../autoscaler.js';
import { validateScale } from '../env/capacity.js';
import { SupervisorError } from '../errors.js';
import { runningDaemon } from '../pidfile.js';
import { effectiveMaxAgents } from '../running-config.js';
import { readDesired } from '../scaler.js';
import { printJson, say } from './output.js';

/**
 * `supervisor scale --auto MIN..MAX`: the running supervisor grows and shrinks its agents with
 * the queue's depth from now on (until a fixed `scale N`).
 */
export function scaleAuto(ctx: Context, range: string, json: boolean): void {
  const r = parseAutoscaleRange(range, effectiveMaxAgents(ctx).maxAgents);
  // The environment must be able to serve the maximum (port blocks, Redis DBs).
  validateScale(ctx, r.max);
  const daemon = runningDaemon(ctx.paths.pidFile);
  if (!daemon) {
    throw new SupervisorError(
      'ERR_SUP_NOT_RUNNING',
      'the supervisor is not running for this repository',
      {
        hint: `start it with autoscale in supervisor.config.json ({"autoscale": {"min": ${r.min}, "max": ${r.max}}}), or start it and run this again`,
      },
    );
  }
  const policy = {
    ...r,
    idleGraceMs: ctx.config.autoscale?.idleGrace ?? DEFAULT_IDLE_GRACE_MS,
  };
  writeAutoscale(ctx.db, policy);
  if (json)
    printJson({
      desiredAgents: readDesired(ctx.db),
      converged: false,
      autoscale: policy,
    });
  else
    say(
      `autoscaling between ${r.min} and ${r.max} agents on the queue's depth (idle agents stop after ${Math.round(policy.idleGraceMs / 1000)} s)`,
    );
}
