import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { useCleanups } from '../helpers/cleanup.js';
import { git, tempDir } from '../helpers/repo.js';
import { landingWorld } from './helpers.js';

const cleanups = useCleanups();

describe('conflicts go back to an agent', () => {
  it('the second of two conflicting issues is requeued, its agent sees the conflict files and the prompt section, and it lands on the next try', async () => {
    const echo = join(tempDir('sup-echo-'), 'echo');
    const w = landingWorld(cleanups, {
      SUPERVISOR_LAND_AUTO: 'true',
      AGENT_ECHO_FILE: echo,
    });
    const before = git(w.dir, 'rev-parse', 'main');
    // Both agents start from the same base and write the same new file.
    const a = await w.add('first', 'sleep: 1500\nwrite: same.txt');
    const b = await w.add('second', 'sleep: 1500\nwrite: same.txt');
    await w.start(['--agents', '2']);
    const ma = await w.waitStatus(a, ['merged'], 90_000);
    const mb = await w.waitStatus(b, ['merged'], 90_000);
    // One of them landed first; the other conflicted, went back, and landed after rework.
    const [first, second] = ma.landAttempts === 1 ? [ma, mb] : [mb, ma];
    expect(first).toMatchObject({ landAttempts: 1, requeues: 0 });
    expect(second).toMatchObject({ landAttempts: 2, requeues: 1 });
    expect(second.landings!.map((l: any) => l.state)).toEqual([
      'conflict',
      'merged',
    ]);
    expect(second.landings![0].conflictFiles).toEqual(['same.txt']);
    expect(second.runs!.length).toBe(2); // agent attempts, counted apart
    expect(second.history!.map((h) => h.to)).toEqual([
      'open',
      'queued',
      'in_progress',
      'done',
      'landing',
      'conflict',
      'open',
      'queued',
      'in_progress',
      'done',
      'landing',
      'merged',
    ]);
    const env = JSON.parse(
      readFileSync(`${echo}.${second.id}.env`, 'utf8'),
    ) as Record<string, string>;
    expect(env.LAND_CONFLICT_FILES).toBe('same.txt');
    expect(env.LAND_REASON).toBe('conflict');
    expect(env.PREVIOUS_RESULT_SHA).toBe(second.landings![0].sourceSha);
    const prompt = readFileSync(`${echo}.${second.id}.prompt`, 'utf8');
    expect(prompt).toMatch(/## Landing attempt 1 was sent back/);
    expect(prompt).toMatch(
      /conflicts with the current main in these files:\n\n- same\.txt/,
    );
    // main holds both, the second's rework on top of the first.
    expect(git(w.dir, 'rev-list', '--count', `${before}..main`)).toBe('2');
    expect(git(w.dir, 'rev-parse', 'main')).toBe(second.landedSha);
    expect(readFileSync(join(w.dir, 'same.txt'), 'utf8')).toMatch(
      new RegExp(`resolved ${second.id}:`),
    );
  });
});
