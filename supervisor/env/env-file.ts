import { createHash } from 'node:crypto';
import { renameSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';

export { ENV_FILE } from '../../contract/worktreeinclude.js';
import { ENV_FILE } from '../../contract/worktreeinclude.js';

/**
 * `COMPOSE_PROJECT_NAME` for a slot: unique per repository and slot, valid for Compose
 * (lower-case letters, digits, `-`, `_`, starting with a letter or digit).
 */
export function composeProjectName(
  repoRoot: string,
  repoId: string,
  slot: string,
): string {
  const name =
    basename(repoRoot)
      .toLowerCase()
      .replace(/[^a-z0-9_-]+/g, '-')
      .replace(/^[-_]+/, '')
      .slice(0, 30) || 'repo';
  const id = repoId || createHash('sha256').update(repoRoot).digest('hex');
  return `${name}-${id.slice(0, 8)}-${slot}`;
}

function quote(v: string): string {
  // Plain values stay plain (what docker compose, dotenv and shells all read alike).
  if (/^[A-Za-z0-9_./:@%+,=-]*$/.test(v)) return v;
  return `"${v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n').replace(/\$/g, '\\$')}"`;
}

export function renderEnvFile(
  slot: string,
  vars: Record<string, string>,
): string {
  const lines = [
    `# Written by agent-supervisor for ${slot}: this worktree's share of the dev infrastructure.`,
    '# Regenerated at every start of the slot; edits are lost. Not committed (.git/info/exclude).',
    ...Object.entries(vars).map(([k, v]) => `${k}=${quote(v)}`),
  ];
  return `${lines.join('\n')}\n`;
}

/** Writes `.env.worktree` atomically (a reader never sees half a file). */
export function writeEnvFile(
  worktree: string,
  slot: string,
  vars: Record<string, string>,
): string {
  const file = join(worktree, ENV_FILE);
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, renderEnvFile(slot, vars));
  renameSync(tmp, file);
  return file;
}
