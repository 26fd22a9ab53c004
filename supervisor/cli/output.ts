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

export function table(rows: string[][], header: string[]): string {
  // Cells are escaped before widths are measured, so an escape keeps the columns aligned.
  const all = [header, ...rows].map((r) => r.map((c) => forTerminal(c)));
  const widths = header.map((_, i) =>
    Math.max(...all.map((r) => (r[i] ?? '').length)),
  );
  return all
    .map((r) =>
      r
        .map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!)))
        .join('  '),
    )
    .join('\n');
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
