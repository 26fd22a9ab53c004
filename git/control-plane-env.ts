/**
 * The control plane's environment variables: settings and credentials of the supervisor and its
 * runners that no code an agent wrote may get — the agent itself, `land.check`, and the git the
 * runner starts as the agent's user. One list, so a new secret is dropped everywhere at once. It
 * lives beside the one git runner, which needs it and imports nothing else of ours:
 * - `SUPERVISOR_*`: the runner's configuration (the queue's Redis URL), the dashboard token, …;
 * - `GIT_*`: a hook's `GIT_DIR`, an outer repository's settings;
 * - `REDIS_URL`: the queue's Redis (a slot gets its own `REDIS_URL` from its environment slot);
 * - `POSTGRES_URL`: the admin role (a slot gets its own database's URL).
 */
export function isControlPlaneVar(name: string): boolean {
  return (
    name.startsWith('SUPERVISOR_') ||
    name.startsWith('GIT_') ||
    name === 'REDIS_URL' ||
    name === 'POSTGRES_URL'
  );
}

/** `env` (default: this process's) without the control plane's variables. */
export function withoutControlPlane(
  env: NodeJS.ProcessEnv = process.env,
): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(env))
    if (v !== undefined && !isControlPlaneVar(k)) out[k] = v;
  return out;
}
