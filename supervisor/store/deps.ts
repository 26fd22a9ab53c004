import { SupervisorError } from '../errors.js';
import type { Db } from './db.js';
import { withChange } from './history.js';
import type { Issue, IssueStatus } from './issues.js';

/** Statuses of a dependency that hold its dependents for good (until it is retried). */
const BLOCKING: readonly IssueStatus[] = ['failed', 'cancelled', 'blocked'];

/**
 * Dependencies between issues (`issue add --after 12,13`, API `dependsOn`): an issue is fed
 * only once every issue it depends on reached the configured status (merged, or done when
 * nothing lands), and is `blocked` when one of them failed or was cancelled.
 */
export class DependencyStore {
  constructor(private readonly db: Db) {}

  /** Replaces the dependencies of `id`; refuses unknown issues, itself and cycles. */
  set(id: number, dependsOn: readonly number[]): void {
    const deps = [...new Set(dependsOn)];
    this.db.transaction(() => {
      for (const d of deps) {
        if (d === id)
          throw new SupervisorError(
            'ERR_SUP_INVALID_ISSUE',
            `issue #${id} cannot depend on itself`,
          );
        if (!this.db.prepare('SELECT 1 FROM issues WHERE id = ?').get(d))
          throw new SupervisorError(
            'ERR_SUP_INVALID_ISSUE',
            `issue #${d} (in --after) does not exist`,
            { hint: 'list issues with `supervisor issue list`' },
          );
        const path = this.pathBetween(d, id);
        if (path)
          throw new SupervisorError(
            'ERR_SUP_INVALID_ISSUE',
            `#${id} after #${d} would make a cycle: ${[id, ...path].map((n) => `#${n}`).join(' → ')}`,
            { hint: 'drop one of the dependencies in the cycle' },
          );
      }
      this.db.prepare('DELETE FROM issue_deps WHERE issue_id = ?').run(id);
      const ins = this.db.prepare(
        'INSERT INTO issue_deps (issue_id, depends_on) VALUES (?, ?)',
      );
      for (const d of deps) ins.run(id, d);
    })();
  }

  /** A path of dependencies from `from` to `to` (`from` waits for … `to`), if any. */
  private pathBetween(from: number, to: number): number[] | undefined {
    const next = this.db.prepare(
      'SELECT depends_on AS d FROM issue_deps WHERE issue_id = ?',
    );
    const seen = new Set<number>();
    const walk = (n: number): number[] | undefined => {
      if (n === to) return [n];
      if (seen.has(n)) return undefined;
      seen.add(n);
      for (const { d } of next.all(n) as Array<{ d: number }>) {
        const p = walk(d);
        if (p) return [n, ...p];
      }
      return undefined;
    };
    return walk(from);
  }

  dependsOn(id: number): number[] {
    return (
      this.db
        .prepare(
          'SELECT depends_on AS d FROM issue_deps WHERE issue_id = ? ORDER BY d',
        )
        .all(id) as Array<{ d: number }>
    ).map((r) => r.d);
  }

  /** Dependencies of `id` not yet in one of the `until` statuses. */
  waitingFor(id: number, until: readonly IssueStatus[]): number[] {
    return (
      this.db
        .prepare(
          `SELECT p.id FROM issue_deps d JOIN issues p ON p.id = d.depends_on
           WHERE d.issue_id = ? AND p.status NOT IN (${until.map(() => '?').join(',')}) ORDER BY p.id`,
        )
        .all(id, ...until) as Array<{ id: number }>
    ).map((r) => r.id);
  }

  /** The issues of `batch` whose dependencies are all met (what the feeder may feed). */
  ready(batch: readonly Issue[], until: readonly IssueStatus[]): Issue[] {
    if (batch.length === 0) return [];
    const held = new Set(
      (
        this.db
          .prepare(
            `SELECT DISTINCT d.issue_id AS id FROM issue_deps d JOIN issues p ON p.id = d.depends_on
             WHERE d.issue_id IN (${batch.map(() => '?').join(',')})
               AND p.status NOT IN (${until.map(() => '?').join(',')})`,
          )
          .all(...batch.map((i) => i.id), ...until) as Array<{ id: number }>
      ).map((r) => r.id),
    );
    return held.size === 0 ? [...batch] : batch.filter((i) => !held.has(i.id));
  }

  /** Open issues whose dependency failed or was cancelled become blocked, saying which. */
  blockDependents(): number {
    const rows = this.db
      .prepare(
        `SELECT d.issue_id AS id, p.id AS dep, p.status AS status FROM issue_deps d
         JOIN issues p ON p.id = d.depends_on JOIN issues i ON i.id = d.issue_id
         WHERE i.status = 'open' AND p.status IN (${BLOCKING.map(() => '?').join(',')})`,
      )
      .all(...BLOCKING) as Array<{ id: number; dep: number; status: string }>;
    const done = new Set<number>();
    for (const r of rows) {
      if (done.has(r.id)) continue;
      done.add(r.id);
      const reason = `dependency #${r.dep} is ${r.status}`;
      withChange(this.db, { actor: 'supervisor', reason }, () =>
        this.db
          .prepare(
            `UPDATE issues SET status = 'blocked', error = ?, updated_at = ? WHERE id = ? AND status = 'open'`,
          )
          .run(`blocked: ${reason}`, Date.now(), r.id),
      );
    }
    return done.size;
  }
}

/** The statuses a dependency must reach before its dependents are fed (config `deps.until`). */
export function dependencyGate(cfg: {
  deps: { until: 'auto' | 'merged' | 'done' };
  land: { auto: boolean };
}): IssueStatus[] {
  const until =
    cfg.deps.until === 'auto'
      ? cfg.land.auto
        ? 'merged'
        : 'done'
      : cfg.deps.until;
  return until === 'merged' ? ['merged'] : ['done', 'landing', 'merged'];
}
