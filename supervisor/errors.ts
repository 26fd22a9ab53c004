/** One error type with a stable code, a message, a hint and a cause. */
export type ErrorCode =
  | 'ERR_SUP_USAGE'
  | 'ERR_SUP_NOT_A_REPO'
  | 'ERR_SUP_EMPTY_REPO'
  | 'ERR_SUP_NOT_INITIALISED'
  | 'ERR_SUP_CONFIG'
  | 'ERR_SUP_REDIS_UNREACHABLE'
  | 'ERR_SUP_ALREADY_RUNNING'
  | 'ERR_SUP_NOT_RUNNING'
  | 'ERR_SUP_ISSUE_NOT_FOUND'
  | 'ERR_SUP_INVALID_ISSUE'
  | 'ERR_SUP_SCALE_LIMIT'
  | 'ERR_SUP_DATABASE'
  | 'ERR_SUP_GIT'
  | 'ERR_SUP_ENV_EXHAUSTED'
  | 'ERR_SUP_POSTGRES'
  | 'ERR_SUP_DOCKER'
  | 'ERR_SUP_TIMEOUT'
  | 'ERR_SUP_LAND_REFUSED'
  | 'ERR_SUP_LAND_BUSY'
  | 'ERR_SUP_ISSUE_STATE';

export class SupervisorError extends Error {
  readonly code: ErrorCode;
  readonly hint: string | undefined;

  constructor(
    code: ErrorCode,
    message: string,
    opts: { hint?: string; cause?: unknown } = {},
  ) {
    super(
      redactSecrets(message),
      opts.cause === undefined ? undefined : { cause: opts.cause },
    );
    this.name = 'SupervisorError';
    this.code = code;
    this.hint = opts.hint === undefined ? undefined : redactSecrets(opts.hint);
  }
}

/** Anything thrown, as an Error (done once, where it is caught). */
export function coerceError(err: unknown): Error {
  if (err instanceof Error) return err;
  return new Error(typeof err === 'string' ? err : JSON.stringify(err));
}

/** Strips passwords from every URL in a text: `redis://:secret@h` → `redis://:***@h`. */
export function redactSecrets(text: string): string {
  // Bounded scheme length: unbounded, the pattern backtracks quadratically on long tokens.
  return text.replace(
    /\b([a-z][a-z0-9+.-]{0,30}:\/\/)([^/\s:@]{0,256}):([^@\s/]{1,1024})@/gi,
    '$1$2:***@',
  );
}
