import { spawnSync } from 'node:child_process';

/**
 * The Compose command line on this machine: `docker compose` (the CLI plugin), else Debian's
 * `docker-compose` 1.x, else undefined (test/provision.sh installs the latter).
 */
export function composeCommand(): string[] | undefined {
  if (spawnSync('docker', ['compose', 'version']).status === 0)
    return ['docker', 'compose'];
  if (spawnSync('docker-compose', ['version']).status === 0)
    return ['docker-compose'];
  return undefined;
}
