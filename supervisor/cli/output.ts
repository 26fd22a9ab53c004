import { redactSecrets } from '../errors.js';

export interface GlobalOpts {
  repo?: string;
  json?: boolean;
}

/** `--json` prints machine-readable JSON on stdout and nothing else there. */
export function printJson(value: unknown): void {
  process.stdout.write(`${redactSecrets(JSON.stringify(value, null, 2))}\n`);
}

export function say(text: string): void {
  process.stdout.write(`${text}\n`);
}

/** Progress goes to stderr so that stdout stays clean for pipes and --json. */
export function progress(text: string): void {
  process.stderr.write(`${text}\n`);
}

export function table(rows: string[][], header: string[]): string {
  const all = [header, ...rows];
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

export function oneLine(s: string, max = 60): string {
  const line = s
    .replace(/[\r\n\t]+/g, ' ')
    .replace(/[\u0000-\u001f\u007f]/g, '');
  return line.length > max ? `${line.slice(0, max - 1)}…` : line;
}
