import { closeSync, fstatSync, openSync, readSync } from 'node:fs';

const TAIL_BYTES = 4096;
const TAIL_LINES = 12;
const STAMP = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z /;

/**
 * The last lines of an agent's run log, for a failed attempt's error: "exited with code 1"
 * alone does not say what went wrong. Empty when the log is not on this host (remote runners)
 * or not readable. Control characters are dropped (the error is shown in terminals and pages).
 */
export function outputTail(logPath: string | null | undefined): string {
  if (!logPath) return '';
  let fd: number | undefined;
  try {
    fd = openSync(logPath, 'r');
    const size = fstatSync(fd).size;
    const len = Math.min(size, TAIL_BYTES);
    const buf = Buffer.alloc(len);
    readSync(fd, buf, 0, len, size - len);
    const lines = buf
      .toString('utf8')
      .replace(/\x1b\[[0-9;?]*[A-Za-z]|[\x00-\x08\x0b-\x1f\x7f]/g, '')
      .split('\n')
      // Attempt logs stamp each line with the time it arrived: the error shows the text only.
      .map((l) => l.replace(STAMP, '').trimEnd())
      .filter(Boolean);
    return lines.slice(-TAIL_LINES).join('\n');
  } catch {
    return '';
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** A failure's message with the end of the agent's output, when there is one. */
export function withOutputTail(
  error: string,
  logPath: string | null | undefined,
): string {
  const tail = outputTail(logPath);
  return tail
    ? `${error}\n--- last lines of the agent's output ---\n${tail}`
    : error;
}
