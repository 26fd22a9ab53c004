import { describe, it } from 'vitest';

/**
 * A describe block that needs something the machine may lack (root, a Docker engine, a
 * command): `missing` is why it cannot run here, or undefined when it can. Under `CI` the block
 * fails with that reason (such suites are required there); elsewhere it is skipped with the
 * reason printed on one line. `npm test` provisions what it can first (test/provision.sh).
 */
export function describeNeeds(
  missing: string | undefined,
  name: string,
  fn: () => void,
): void {
  if (!missing) {
    describe(name, fn);
  } else if (process.env.CI) {
    describe(name, () => {
      it(`cannot run here (required in CI): ${missing}`, () => {
        throw new Error(missing);
      });
    });
  } else {
    process.stderr.write(`[skipped] "${name}": ${missing}\n`);
    describe.skip(name, fn);
  }
}

export const isRoot = process.getuid?.() === 0;

/** Why a suite that needs root cannot run here, or undefined. */
export const needsRoot = (why: string): string | undefined =>
  isRoot ? undefined : `needs root (${why}); run the tests as root`;
