import {
  appendFileSync,
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  statSync,
  utimesSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CappedLog } from '../../agent-runner/capped-log.js';
import { LineStamper } from '../../agent-runner/line-stamper.js';
import { pruneLogs, rotateRunnerLog } from '../../supervisor/logs/retention.js';
import { followFile, lastLines } from '../../supervisor/logs/tail.js';
import { tempDir } from '../helpers/repo.js';

const line = (i: number) => `output line ${String(i).padStart(6, '0')}\n`;

function end(log: CappedLog): Promise<void> {
  return new Promise((r) => log.end(r));
}

describe('bounded logs', () => {
  it('an attempt log keeps its head and tail within the cap, and says how much was cut', async () => {
    const file = join(tempDir('sup-capped-'), 'issue-1-attempt-1.log');
    const cap = 64 * 1024;
    const log = new CappedLog(file, cap);
    let max = 0;
    const n = 20_000; // ~420 KB of output
    for (let i = 0; i < n; i++) {
      await new Promise<void>((r) => log.write(line(i), () => r()));
      if (i % 500 === 0) max = Math.max(max, statSync(file).size);
    }
    await end(log);
    // While writing it stays under 1.5× the cap (plus one write); closed, under the cap.
    expect(max).toBeLessThanOrEqual(cap * 1.5 + 64);
    const text = readFileSync(file, 'utf8');
    expect(text.length).toBeLessThanOrEqual(cap);
    expect(text.startsWith(line(0))).toBe(true);
    expect(text.endsWith(line(n - 1))).toBe(true);
    const m = /\[… (\d+) bytes of output cut: .*…\]\n/.exec(text);
    expect(m).not.toBeNull();
    // Every byte is either kept or counted as cut.
    const total = n * line(0).length;
    expect(text.length - m![0].length + Number(m![1])).toBe(total);
    // Whole lines on both sides of the cut.
    for (const l of text.split('\n').filter(Boolean))
      expect(l).toMatch(/^output line \d{6}$|^\[… \d+ bytes/);
  });

  it("a small attempt log is left as written; the runner's copy of the output is stamped line by line", async () => {
    const file = join(tempDir('sup-capped-'), 'a.log');
    const log = new CappedLog(file, 64 * 1024);
    log.write('one\ntwo');
    log.write(' halves\n');
    await end(log);
    expect(readFileSync(file, 'utf8')).toBe('one\ntwo halves\n');
    let out = '';
    const sink = { write: (s: string) => ((out += s), true) };
    const st = new LineStamper(
      sink as unknown as NodeJS.WritableStream,
      () => new Date('2026-05-01T10:00:00.000Z'),
    );
    st.write('a\nb');
    st.write('c\n');
    st.write('no newline');
    st.end('--- end: agent exited 0');
    expect(out).toBe(
      '2026-05-01T10:00:00.000Z a\n2026-05-01T10:00:00.000Z bc\n' +
        '2026-05-01T10:00:00.000Z no newline\n2026-05-01T10:00:00.000Z --- end: agent exited 0\n',
    );
  });

  it('rotates a runner log that a writer keeps open (copy and truncate); the follower starts over', async () => {
    const dir = tempDir('sup-rotate-');
    const file = join(dir, 'agent-001.log');
    const fd = openSync(file, 'a'); // the runner's stdout, appending
    for (let i = 0; i < 100; i++) writeSync(fd, line(i));
    const seen: string[] = [];
    const stop = followFile(file, 0, (lines) => seen.push(...lines), 20);
    try {
      await waitUntil(() => seen.length === 100);
      expect(rotateRunnerLog(file, 1000, 2)).toBe(true);
      expect(statSync(file).size).toBe(0);
      expect(readFileSync(`${file}.1`, 'utf8')).toContain(line(99));
      writeSync(fd, 'after rotation\n');
      await waitUntil(() => seen.includes('after rotation'));
      expect(readFileSync(file, 'utf8')).toBe('after rotation\n');
      // A second rotation shifts .1 to .2; a third drops the oldest.
      for (let i = 0; i < 100; i++) writeSync(fd, line(i));
      rotateRunnerLog(file, 1000, 2);
      expect(readFileSync(`${file}.2`, 'utf8')).toContain(line(99));
      expect(readFileSync(`${file}.1`, 'utf8')).toMatch(/^after rotation/);
      expect(rotateRunnerLog(file, 1000, 2)).toBe(false); // small: left alone
    } finally {
      stop();
      closeSync(fd);
    }
  });

  it('follows a capped log across its compaction without repeating or losing the newest lines', async () => {
    const file = join(tempDir('sup-follow-'), 'issue-1-attempt-1.log');
    const log = new CappedLog(file, 8 * 1024);
    const seen: string[] = [];
    const stop = followFile(file, 0, (lines) => seen.push(...lines), 10);
    try {
      for (let i = 0; i < 2000; i++) {
        await new Promise<void>((r) => log.write(line(i), () => r()));
        if (i % 50 === 0) await new Promise((r) => setTimeout(r, 15));
      }
      await end(log);
      await waitUntil(() => seen.at(-1) === line(1999).trim());
    } finally {
      stop();
    }
    const nums = seen
      .map((l) => /^output line (\d+)$/.exec(l)?.[1])
      .filter((x): x is string => x !== undefined)
      .map(Number);
    // Strictly increasing: nothing shown twice, in order; the end is there.
    for (let i = 1; i < nums.length; i++)
      expect(nums[i]!).toBeGreaterThan(nums[i - 1]!);
    expect(nums.at(-1)).toBe(1999);
    expect(lastLines(file, 1).lines).toEqual([line(1999).trim()]);
  });

  it('logs.keep deletes old attempt logs and rotated runner logs, never a current runner log', () => {
    const dir = tempDir('sup-prune-');
    mkdirSync(join(dir, 'agent-001'));
    mkdirSync(join(dir, 'agent-002'));
    const old = Date.now() / 1000 - 30 * 86_400;
    const files = {
      oldAttempt: join(dir, 'agent-001', 'issue-1-attempt-1.log'),
      newAttempt: join(dir, 'agent-001', 'issue-2-attempt-1.log'),
      lonelyOld: join(dir, 'agent-002', 'issue-3-attempt-1.log'),
      oldRotated: join(dir, 'agent-001.log.2'),
      oldCurrent: join(dir, 'agent-001.log'),
      other: join(dir, 'notes.txt'),
    };
    for (const f of Object.values(files)) writeFileSync(f, 'x'.repeat(100));
    for (const f of [
      files.oldAttempt,
      files.lonelyOld,
      files.oldRotated,
      files.oldCurrent,
      files.other,
    ])
      utimesSync(f, old, old);
    appendFileSync(files.newAttempt, 'fresh');
    expect(pruneLogs(dir, 14 * 86_400_000)).toEqual({ files: 3, bytes: 300 });
    expect(existsSync(files.oldAttempt)).toBe(false);
    expect(existsSync(files.oldRotated)).toBe(false);
    expect(existsSync(files.lonelyOld)).toBe(false);
    // The slot's directory stays: a running container may have it bind-mounted.
    expect(existsSync(join(dir, 'agent-002'))).toBe(true);
    expect(existsSync(files.newAttempt)).toBe(true);
    expect(existsSync(files.oldCurrent)).toBe(true);
    expect(existsSync(files.other)).toBe(true);
  });
});

async function waitUntil(fn: () => boolean, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!fn()) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 10));
  }
}
