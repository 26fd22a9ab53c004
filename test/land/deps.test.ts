import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { useCleanups } from '../helpers/cleanup.js';
import { tempDir } from '../helpers/repo.js';
import { landingWorld } from './helpers.js';

const cleanups = useCleanups();

describe('dependencies', () => {
  it('--after: a dependent starts only after its dependency is done (by the agents own start times); cycles are refused; a failed dependency blocks its dependents with the reason', async () => {
    const record = join(tempDir('sup-rec-'), 'record');
    const w = landingWorld(cleanups, {
      AGENT_RECORD_FILE: record,
      SUPERVISOR_ATTEMPTS: '1',
    });
    const first = await w.add('first', 'sleep: 1500\nwrite: first.txt');
    const second = await w.add('second', 'write: second.txt', [
      '--after',
      String(first),
    ]);
    const doomed = await w.add('doomed', 'exit: 4');
    const held = await w.add('held', 'write: held.txt', [
      '--after',
      `${doomed},${first}`,
    ]);
    const after = await w.add('after held', 'write: x.txt', [
      '--after',
      String(held),
    ]);

    // Cycles and unknown ids are refused, and nothing is added or changed.
    const cycle = await w.cli([
      'issue',
      'edit',
      String(first),
      '--after',
      String(after),
    ]);
    expect(cycle.code).toBe(2);
    expect(cycle.stderr).toMatch(
      new RegExp(
        `would make a cycle: #${first} → #${after} → #${held} → #${first}`,
      ),
    );
    const unknown = await w.cli(['issue', 'add', 'x', '--after', '99']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/#99 \(in --after\) does not exist/);
    expect((await w.list()).length).toBe(5);
    const text = await w.cli(['issue', 'list']);
    expect(text.stdout).toMatch(new RegExp(`open \\(after #${first}\\)`));

    await w.start(['--agents', '3']);
    await w.waitStatus(second, ['done']);
    const blocked = await w.waitStatus(held, ['blocked']);
    expect(blocked.error).toMatch(
      new RegExp(`dependency #${doomed} is failed`),
    );
    expect(blocked.history!.at(-1)).toMatchObject({
      to: 'blocked',
      reason: `dependency #${doomed} is failed`,
    });
    await w.waitStatus(after, ['blocked']);
    const lines = readFileSync(record, 'utf8').trim().split('\n');
    const at = (what: string, id: number) =>
      Number(
        lines
          .find((l) => l.startsWith(`${what} ${id} `))!
          .split(' ')
          .at(-1),
      );
    expect(at('start', second)).toBeGreaterThanOrEqual(at('end', first));
    expect(lines.some((l) => l.startsWith(`start ${held} `))).toBe(false);
    const shown = await w.show(second);
    expect(shown).toMatchObject({ dependsOn: [first], waitingFor: [] });
  });
});
