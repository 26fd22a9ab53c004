import { closeSync, existsSync, openSync, readSync, statSync } from 'node:fs';

const MAX_LINE = 8 * 1024;

/** Lines as the page shows them: no control characters but tabs, long ones cut. */
export function cleanLine(line: string): string {
  const s = line
    .replace(/\x1b\[[0-9;?]*[ -/]*[@-~]/g, '')
    .replace(/[\u0000-\u0008\u000b-\u001f\u007f]/g, '');
  return s.length > MAX_LINE ? `${s.slice(0, MAX_LINE)}…` : s;
}

function readRange(file: string, from: number, to: number): Buffer {
  const fd = openSync(file, 'r');
  try {
    const buf = Buffer.alloc(to - from);
    let got = 0;
    while (got < buf.length) {
      const n = readSync(fd, buf, got, buf.length - got, from + got);
      if (n === 0) break;
      got += n;
    }
    return buf.subarray(0, got);
  } finally {
    closeSync(fd);
  }
}

/**
 * The last `n` complete lines of a file and the byte offset after them (the resume point).
 * A partial last line is left for the follower.
 */
export function lastLines(
  file: string,
  n: number,
): { lines: string[]; offset: number } {
  if (!existsSync(file)) return { lines: [], offset: 0 };
  const size = statSync(file).size;
  let start = size;
  let text = Buffer.alloc(0);
  const CHUNK = 64 * 1024;
  while (start > 0) {
    const from = Math.max(0, start - CHUNK);
    text = Buffer.concat([readRange(file, from, start), text]);
    start = from;
    let count = 0;
    for (const b of text) if (b === 0x0a) count += 1;
    if (count > n) break;
  }
  const end = text.lastIndexOf(0x0a) + 1;
  const complete = text.subarray(0, end).toString('utf8').split('\n');
  complete.pop();
  return { lines: complete.slice(-n).map(cleanLine), offset: start + end };
}

/**
 * Follows a file from `offset` like `tail -f`, handing over complete lines in batches with the
 * offset after them. A file that shrank (truncated, replaced) is read again from its start.
 */
export function followFile(
  file: string,
  offset: number,
  onLines: (lines: string[], offset: number) => void,
  intervalMs = 200,
): () => void {
  let pos = offset;
  const timer = setInterval(() => {
    if (!existsSync(file)) return;
    const size = statSync(file).size;
    if (size < pos) pos = 0;
    if (size === pos) return;
    const buf = readRange(file, pos, Math.min(size, pos + 1024 * 1024));
    const end = buf.lastIndexOf(0x0a) + 1;
    if (end === 0) {
      if (buf.length < MAX_LINE * 4) return; // wait for the rest of the line
    }
    const upto = end === 0 ? buf.length : end;
    const lines = buf.subarray(0, upto).toString('utf8').split('\n');
    if (end !== 0) lines.pop();
    pos += upto;
    onLines(lines.map(cleanLine), pos);
  }, intervalMs);
  return () => clearInterval(timer);
}
