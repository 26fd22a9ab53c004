import { chmodSync, mkdirSync, rmSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from './cli.js';
import { tempDir } from './repo.js';

export const FAKE_PROVIDER_CLI = join(
  ROOT,
  'test/fixtures/fake-provider-cli.mjs',
);

/**
 * A PATH directory holding fake `claude`, `codex` and `aider` programs (the fixture that prints
 * their documented formats) and the state directory they keep their bookkeeping in.
 */
export function fakeTools(cleanups: Array<() => unknown>): {
  bin: string;
  state: string;
} {
  const dir = tempDir('sup-fake-');
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const bin = join(dir, 'bin');
  const state = join(dir, 'state');
  mkdirSync(bin);
  mkdirSync(state);
  chmodSync(FAKE_PROVIDER_CLI, 0o755);
  for (const t of ['claude', 'codex', 'aider'])
    symlinkSync(FAKE_PROVIDER_CLI, join(bin, t));
  return { bin, state };
}
