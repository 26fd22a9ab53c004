/** The chaos run's summary table and the guarantees every run must show. */
import type { ChaosSummary, FaultKind } from './harness.js';

export function formatSummary(s: ChaosSummary): string {
  const count = (k: FaultKind) => s.faults.filter((f) => f.kind === k).length;
  const rows: Array<[string, string]> = [
    ['issues (done / failed)', `${s.issues} (${s.done} / ${s.failed})`],
    ['agent attempts (by its record)', String(s.attempts)],
    ['faults: kill -9 runner', String(count('kill-runner'))],
    ['faults: SIGSTOP runner past its lock', String(count('freeze-runner'))],
    ['faults: kill -9 supervisor + restart', String(count('kill-supervisor'))],
    ['faults: Redis restart (data kept)', String(count('restart-redis'))],
    ['faults: Redis restart (data lost)', String(count('lose-redis'))],
    ['fault kinds that never fired', s.faultsMissing.join(', ') || '0'],
    ['re-claims measured', String(s.reclaims)],
    [
      'fault → re-claim, median / max',
      s.reclaims ? `${s.reclaimMedianMs} ms / ${s.reclaimMaxMs} ms` : '-',
    ],
    ['agent record out of order', String(s.recordErrors.length)],
    ['overlapping attempts', String(s.overlaps.length)],
    [
      'frozen-runner overlaps (max)',
      `${s.frozenOverlaps.length}${s.frozenOverlaps.length ? ` (${Math.max(...s.frozenOverlaps.map((f) => f.ms))} ms)` : ''}`,
    ],
    ['lost work (record + git)', String(s.lost.length)],
    ['duplicated work (git)', String(s.duplicated.length)],
    ['work against the script', String(s.wrongWork.length)],
    ['issues finished twice by agents', String(s.repeatedSuccesses)],
    ['SQLite: unexpected outcomes', String(s.unexpected.length)],
    ['SQLite: duplicated results', String(s.duplicatedResults.length)],
    ['SQLite: attempts not recorded', String(s.unrecordedStarts.length)],
    ['SQLite vs git: branch mismatches', String(s.branchMismatches.length)],
    ['orphans', String(s.orphans.length)],
    ['wall time', `${(s.wallMs / 1000).toFixed(1)} s`],
  ];
  const w = Math.max(...rows.map((r) => r[0].length));
  return rows.map(([k, v]) => `${k.padEnd(w)}  ${v}`).join('\n');
}

/** The guarantees every chaos run must show. */
export function checkGuarantees(
  summary: ChaosSummary,
  expect: (v: unknown) => {
    toEqual(x: unknown): void;
    toBeLessThanOrEqual(n: number): void;
  },
): void {
  expect(summary.faultsMissing).toEqual([]);
  expect(summary.recordErrors).toEqual([]);
  expect(summary.lost).toEqual([]);
  expect(summary.duplicated).toEqual([]);
  expect(summary.wrongWork).toEqual([]);
  expect(summary.overlaps).toEqual([]);
  for (const f of summary.frozenOverlaps)
    expect(f.ms).toBeLessThanOrEqual(2000);
  expect(summary.unexpected).toEqual([]);
  expect(summary.duplicatedResults).toEqual([]);
  expect(summary.unrecordedStarts).toEqual([]);
  expect(summary.branchMismatches).toEqual([]);
  expect(summary.orphans).toEqual([]);
}
