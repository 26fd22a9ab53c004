import { redactSecrets } from '../errors.js';
import { forTerminal } from './terminal.js';

export interface GlobalOpts {
  repo?: string;
  json?: boolean;
  raw?: boolean;
}

/** `--json` prints machine-readable JSON on stdout and nothing else there. */
export function printJson(value: unknown): void {
  process.stdout.write(`${redactSecrets(JSON.stringify(value, null, 2))}\n`);
}

/** Human-readable output: control characters and bidi overrides escaped unless `--raw`. */
export function say(text: string): void {
  process.stdout.write(`${forTerminal(text)}\n`);
}

/** Progress goes to stderr so that stdout stays clean for pipes and --json. */
export function progress(text: string): void {
  process.stderr.write(`${forTerminal(text)}\n`);
}

/** The width to lay human output out in: the terminal's, else $COLUMNS, else unlimited. */
export function outputWidth(): number {
  if (process.stdout.isTTY && process.stdout.columns)
    return process.stdout.columns;
  const cols = Number(process.env.COLUMNS);
  return Number.isInteger(cols) && cols >= 20 ? cols : Infinity;
}

/** `text` in lines of at most `width` characters, broken between words (long words split). */
export function wrapWords(text: string, width: number): string[] {
  if (text.length <= width) return [text];
  const lines: string[] = [];
  let line = '';
  for (let word of text.split(/ +/)) {
    while (word.length > width) {
      if (line) lines.push(line);
      line = '';
      lines.push(word.slice(0, width));
      word = word.slice(width);
    }
    if (!line) line = word;
    else if (line.length + 1 + word.length <= width) line += ` ${word}`;
    else {
      lines.push(line);
      line = word;
    }
  }
  if (line) lines.push(line);
  return lines.length ? lines : [''];
}

const GAP = 2;

/**
 * Columns padded to their widest cell. With `maxWidth`, the `wrap` columns (by index) are
 * narrowed until a row fits, and their text wraps between words inside the column: a row
 * may take several lines, but no line is longer than the width and no word is cut in two
 * by the terminal.
 */
export function table(
  rows: string[][],
  header: string[],
  opts: { maxWidth?: number; wrap?: number[] } = {},
): string {
  // Cells are escaped before widths are measured, so an escape keeps the columns aligned.
  const all = [header, ...rows].map((r) => r.map((c) => forTerminal(c)));
  const widths = header.map((_, i) =>
    Math.max(...all.map((r) => (r[i] ?? '').length)),
  );
  const max = opts.maxWidth ?? Infinity;
  const wrap = (opts.wrap ?? []).filter((i) => i < widths.length);
  const total = () =>
    widths.reduce((a, b) => a + b, 0) + GAP * (widths.length - 1);
  // Narrow the widest wrapping column, one character at a time, down to 10.
  while (total() > max && wrap.length) {
    const i = wrap.reduce((a, b) => (widths[b]! > widths[a]! ? b : a));
    if (widths[i]! <= 10) break;
    widths[i]! -= 1;
  }
  const out: string[] = [];
  for (const r of all) {
    const cells = r.map((c, i) =>
      wrap.includes(i) ? wrapWords(c, widths[i]!) : [c],
    );
    const height = Math.max(...cells.map((c) => c.length));
    for (let k = 0; k < height; k++) {
      out.push(
        cells
          .map((c, i) =>
            i === cells.length - 1
              ? (c[k] ?? '')
              : (c[k] ?? '').padEnd(widths[i]!),
          )
          .join(' '.repeat(GAP))
          .trimEnd(),
      );
    }
  }
  return out.join('\n');
}

export function ago(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
}

/** One line of at most `max` characters; control characters and bidi overrides escaped. */
export function oneLine(s: string, max = 60): string {
  const line = forTerminal(s.replace(/[\r\n\t]+/g, ' '));
  return line.length > max ? `${line.slice(0, max - 1)}…` : line;
}
