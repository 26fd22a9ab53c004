/**
 * Issue 13 item 1: the shared infrastructure's queue Redis never starts without a password.
 * infra/docker-compose.yml takes it from INFRA_REDIS_PASSWORD (`supervisor infra up` generates
 * it) and a real Compose implementation refuses the file without it, naming the fix; with it,
 * the password is what `--requirepass` and the health check get. Read by whichever Compose the
 * machine has (the Docker CLI plugin, else Debian's docker-compose); no engine is needed.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { ROOT } from '../helpers/cli.js';
import { composeCommand } from '../helpers/compose.js';
import { describeNeeds } from '../helpers/requirements.js';

const FILE = join(ROOT, 'infra', 'docker-compose.yml');

const compose = composeCommand();

function config(password: string | undefined) {
  const env = { ...process.env };
  delete env.INFRA_REDIS_PASSWORD;
  if (password !== undefined) env.INFRA_REDIS_PASSWORD = password;
  const [bin, ...args] = compose!;
  const r = spawnSync(bin!, [...args, '-f', FILE, 'config'], {
    env,
    encoding: 'utf8',
  });
  return { code: r.status, out: r.stdout + r.stderr };
}

describeNeeds(
  compose
    ? undefined
    : 'no Compose implementation (`docker compose` or docker-compose): test/provision.sh installs one',
  'infra/docker-compose.yml: the queue Redis needs a password',
  () => {
    it('is refused by Compose without INFRA_REDIS_PASSWORD, and uses the one given', () => {
      for (const missing of [undefined, '']) {
        const r = config(missing);
        expect(r.code, r.out).not.toBe(0);
        expect(r.out).toContain(
          'set INFRA_REDIS_PASSWORD, or use supervisor infra up, which generates it',
        );
      }
      const password = 'pw-only-in-this-test-5f1c';
      const given = config(password);
      expect(given.code, given.out).toBe(0);
      // The password is the server's and the health check's.
      expect(given.out).toMatch(new RegExp(`- --requirepass\\s+- ${password}`));
      expect(given.out).toContain(`REDISCLI_AUTH: ${password}`);
    });
  },
);
