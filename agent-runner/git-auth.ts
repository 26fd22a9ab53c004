import { readFileSync } from 'node:fs';
import { withoutControlPlane } from '../git/control-plane-env.js';

/**
 * Git credentials of a remote-mode runner: a token (sent as `Authorization: Bearer …`) or
 * `user:password` (Basic), from a mounted file or SUPERVISOR_GIT_TOKEN. They reach git only
 * through its environment (GIT_CONFIG_COUNT/KEY/VALUE: never argv, never a config file), and
 * every message that leaves the runner goes through `redact`.
 */
export interface GitCredentials {
  /** The `http.extraHeader` value, or undefined without credentials (SSH keys, open remotes). */
  readonly header: string | undefined;
  /** Strings that must never be shown. */
  readonly secrets: readonly string[];
}

export const NO_CREDENTIALS: GitCredentials = Object.freeze({
  header: undefined,
  secrets: [],
});

export class GitCredentialsError extends Error {}

export function loadGitCredentials(
  file: string | undefined,
  env: NodeJS.ProcessEnv = process.env,
): GitCredentials {
  let raw: string | undefined;
  if (file) {
    try {
      raw = readFileSync(file, 'utf8');
    } catch (err) {
      throw new GitCredentialsError(
        `cannot read the git credentials file ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
      );
    }
  } else {
    raw = env.SUPERVISOR_GIT_TOKEN;
  }
  const value = raw?.trim();
  if (!value) {
    if (file)
      throw new GitCredentialsError(
        `the git credentials file ${file} is empty`,
      );
    return NO_CREDENTIALS;
  }
  if (/[\r\n]/.test(value))
    throw new GitCredentialsError(
      'git credentials must be one line (a token, or user:password)',
    );
  const colon = value.indexOf(':');
  if (colon > 0) {
    const basic = Buffer.from(value, 'utf8').toString('base64');
    return {
      header: `Authorization: Basic ${basic}`,
      secrets: [value, value.slice(colon + 1), basic],
    };
  }
  return { header: `Authorization: Bearer ${value}`, secrets: [value] };
}

/**
 * Environment for a git process: never prompts, ignores the user's credential helpers, and
 * carries the header in git's environment-only configuration.
 */
export function gitEnv(
  creds: GitCredentials,
  base: NodeJS.ProcessEnv = process.env,
): Record<string, string> {
  const env = withoutControlPlane(base);
  const config: Array<[string, string]> = [['credential.helper', '']];
  if (creds.header) config.push(['http.extraHeader', creds.header]);
  env.GIT_TERMINAL_PROMPT = '0';
  env.GIT_ASKPASS = 'true';
  env.GIT_CONFIG_COUNT = String(config.length);
  config.forEach(([k, v], i) => {
    env[`GIT_CONFIG_KEY_${i}`] = k;
    env[`GIT_CONFIG_VALUE_${i}`] = v;
  });
  return env;
}

/** Removes credentials from a text: known secrets, and passwords in URLs (`https://u:***@h`). */
export function redact(text: string, secrets: readonly string[]): string {
  let out = text;
  for (const s of secrets) if (s.length >= 4) out = out.split(s).join('***');
  return out.replace(
    /\b([a-z][a-z0-9+.-]{0,30}:\/\/)([^/\s:@]{0,256}):([^@\s/]{1,1024})@/gi,
    '$1$2:***@',
  );
}
