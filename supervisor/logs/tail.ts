import { closeSync, existsSync, openSync, readSync, statSync } from 'node:fs';

/**
 * The one log tailer: `supervisor logs` and the dashboard's log drawer (JSON and SSE) both read
 * runner and attempt logs through it. History is read from the end in 64 KiB chunks; following
 * reads at most 1 MiB per tick, so a burst of output never becomes one giant allocation.
 */

const CHUNK = 64 * 1024;
const MAX_READ = 1024 * 1024;
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
  if (n <= 0) return { lines: [], offset: size };
  let start = size;
  let text = Buffer.alloc(0);
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
  return { lines: complete.slice(-n), offset: start + end };
}

/**
 * Where to go on in a file that replaced the one being followed: right after the last bytes
 * already read, when the new file still has them (a capped log keeps its tail); else after the
 * "bytes … cut" marker; else from the start.
 */
function resumeIn(file: string, seen: Buffer): number {
  const size = statSync(file).size;
  const from = Math.max(0, size - 32 * MAX_READ);
  const buf = readRange(file, from, size);
  if (seen.length > 0) {
    const at = buf.lastIndexOf(seen);
    if (at >= 0) return from + at + seen.length;
  }
  const marker = buf.lastIndexOf(Buffer.from('[… '));
  if (marker >= 0) {
    const nl = buf.indexOf(0x0a, marker);
    if (nl >= 0) return from + nl + 1;
  }
  return 0;
}

/**
 * A read position in a file that is read like `tail -F`: each `read` hands over the complete
 * lines written since the last one (at most 1 MiB). A file truncated in place (rotation by
 * copy and truncate) is read again from its start; a file replaced by another (a capped log
 * compacted to head and tail) is resumed after the last bytes already handed over.
 */
export class FileCursor {
  private ino: number | undefined;
  private seen = Buffer.alloc(0);

  constructor(
    readonly file: string,
    public offset: number,
  ) {}

  read(): string[] {
    if (!existsSync(this.file)) return [];
    const st = statSync(this.file);
    if (this.ino !== undefined && st.ino !== this.ino)
      this.offset = resumeIn(this.file, this.seen);
    else if (st.size < this.offset) this.offset = 0;
    this.ino = st.ino;
    if (st.size <= this.offset) return [];
    const buf = readRange(
      this.file,
      this.offset,
      Math.min(st.size, this.offset + MAX_READ),
    );
    const end = buf.lastIndexOf(0x0a) + 1;
    if (end === 0 && buf.length < MAX_LINE * 4) return []; // wait for the rest of the line
    const upto = end === 0 ? buf.length : end;
    const lines = buf.subarray(0, upto).toString('utf8').split('\n');
    if (end !== 0) lines.pop();
    this.offset += upto;
    this.seen = Buffer.from(buf.subarray(Math.max(0, upto - 256), upto));
    return lines;
  }
}

/**
 * Follows a file from `offset` like `tail -F` (see FileCursor), handing over complete lines in
 * batches with the offset after them.
 */
export function followFile(
  file: string,
  offset: number,
  onLines: (lines: string[], offset: number) => void,
  intervalMs = 200,
): () => void {
  const cursor = new FileCursor(file, offset);
  const timer = setInterval(() => {
    const lines = cursor.read();
    if (lines.length > 0) onLines(lines, cursor.offset);
  }, intervalMs);
  return () => clearInterval(timer);
}
