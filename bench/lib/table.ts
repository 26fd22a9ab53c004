import type { RowResult } from './row.js';

/** A plain-text table (also valid Markdown) of the rows. */
export function renderTable(rows: readonly RowResult[]): string {
  const head = [
    'Benchmark',
    'Ours',
    'Baseline (same run)',
    'Ours vs baseline',
    'Target',
    'Met',
  ];
  const body = rows.map((r) => [
    r.title,
    r.ours,
    r.baseline,
    r.comparison,
    r.target,
    r.met === undefined ? '' : r.met ? 'yes' : 'NO',
  ]);
  const widths = head.map((h, i) =>
    Math.max(h.length, ...body.map((b) => b[i]!.length)),
  );
  const line = (cells: string[]) =>
    `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |`;
  return [
    line(head),
    `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`,
    ...body.map(line),
  ].join('\n');
}
