import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  isBranchName,
  loadConfig,
  mergeLayers,
  parseBytes,
  parseDuration,
} from '../../supervisor/config.js';
import { SupervisorError } from '../../supervisor/errors.js';
import { LeaseSchema } from '../../contract/job.js';

describe('durations and sizes', () => {
  it('reads durations with an optional unit (ms by default)', () => {
    expect(parseDuration('250')).toBe(250);
    expect(parseDuration('250ms')).toBe(250);
    expect(parseDuration(' 1.5 s ')).toBe(1500);
    expect(parseDuration('15m')).toBe(900_000);
    expect(parseDuration('2h')).toBe(7_200_000);
    expect(parseDuration('14d')).toBe(14 * 86_400_000); // logs.keep
    for (const bad of ['', 's', '-1s', '1w', '1 m s', '1e3'])
      expect(parseDuration(bad), bad).toBeUndefined();
  });

  it('reads sizes in binary units', () => {
    expect(parseBytes('512')).toBe(512);
    expect(parseBytes('2k')).toBe(2048);
    expect(parseBytes('3g')).toBe(3 * 1024 ** 3);
    expect(parseBytes('1.5GiB')).toBe(1.5 * 1024 ** 3);
    expect(parseBytes('12GB')).toBe(12 * 1024 ** 3);
    for (const bad of ['', 'g', '-1g', '1x'])
      expect(parseBytes(bad), bad).toBeUndefined();
  });
});

describe('branch names', () => {
  it('accepts what git accepts as a branch, refuses options and escapes', () => {
    for (const ok of ['main', 'release/1.2', 'feature-x', 'a_b'])
      expect(isBranchName(ok), ok).toBe(true);
    for (const bad of [
      '-d',
      '/main',
      'main/',
      'a..b',
      'a//b',
      'x.lock',
      'a b',
      'a~1',
      'a^',
      'a:b',
      '@',
      'a@{1}',
      '.hidden',
      'a/.b',
      'tab\tname',
    ])
      expect(isBranchName(bad), bad).toBe(false);
  });
});

describe('configuration layers', () => {
  const file = (content: unknown): string => {
    const dir = mkdtempSync(join(tmpdir(), 'sup-unit-config-'));
    const f = join(dir, 'supervisor.config.json');
    writeFileSync(
      f,
      typeof content === 'string' ? content : JSON.stringify(content),
    );
    return f;
  };

  it('merges objects deeply, later layers winning, undefined never overriding', () => {
    expect(
      mergeLayers(
        { a: 1, lease: { lockDuration: 1, killGrace: 2 } },
        undefined,
        { lease: { lockDuration: 3 }, a: undefined },
        { b: [1] },
      ),
    ).toEqual({ a: 1, b: [1], lease: { lockDuration: 3, killGrace: 2 } });
  });

  it('defaults < file < environment < flags', () => {
    const f = file({ attempts: 4, backoff: 1000, prefix: 'from-file' });
    const c = loadConfig({
      configFile: f,
      env: { SUPERVISOR_BACKOFF: '2000', SUPERVISOR_PREFIX: 'from-env' },
      flags: { prefix: 'from-flag' },
    });
    expect(c.attempts).toBe(4);
    expect(c.backoff).toBe(2000);
    expect(c.prefix).toBe('from-flag');
    expect(Object.isFrozen(c)).toBe(true);
    const defaults = loadConfig({ env: {} });
    expect(defaults.attempts).toBeGreaterThan(0);
  });

  it('refuses bad values with ERR_SUP_CONFIG, naming the field, with a hint', () => {
    const err = (() => {
      try {
        loadConfig({ env: { SUPERVISOR_ATTEMPTS: 'many' } });
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    expect(err).toBeInstanceOf(SupervisorError);
    expect((err as SupervisorError).code).toBe('ERR_SUP_CONFIG');
    expect((err as SupervisorError).message).toMatch(/attempts/);
    expect((err as SupervisorError).hint).toBeTruthy();
  });

  it('refuses a file that is not JSON, or not an object', () => {
    expect(() => loadConfig({ configFile: file('{ nope'), env: {} })).toThrow(
      /not valid JSON/,
    );
    expect(() => loadConfig({ configFile: file([1, 2]), env: {} })).toThrow(
      /must hold a JSON object/,
    );
  });
});

describe('the default lease', () => {
  // Issue 16: a runner whose host is lost frees its job within lock + one stalled check (the
  // bench row `lost-host` measures it); a live runner renews at half the lock, so it rides out
  // gaps of at least that long.
  it('bounds a lost host at 30 s and still tolerates 10 s without Redis', () => {
    const lease = LeaseSchema.parse({});
    expect(lease.lockDurationMs + lease.stalledIntervalMs).toBeLessThanOrEqual(
      30_000,
    );
    expect(lease.lockDurationMs / 2).toBeGreaterThanOrEqual(10_000);
    expect(lease.maxStalledCount).toBeGreaterThanOrEqual(2);
  });
});
