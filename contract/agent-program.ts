import { accessSync, constants, statSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';

/** Words that run the next word as the program (`exec claude …`, `env A=1 claude …`). */
const PASS_THROUGH = new Set(['exec', 'env', 'command', 'nohup', 'time']);

/**
 * The program an agent command runs first ("claude" in `claude -p … < "$ISSUE_PROMPT_FILE"`),
 * or undefined when that cannot be told without running a shell (a variable, a subshell, a
 * compound command). Leading `VAR=value` assignments and `exec`/`env`/`nohup` are skipped.
 */
export function programOf(command: string): string | undefined {
  const words = command.trim().split(/\s+/);
  for (const raw of words) {
    if (/^[A-Za-z_][A-Za-z0-9_]*=/.test(raw)) continue;
    if (PASS_THROUGH.has(raw)) continue;
    // Quotes around a plain word are fine; anything a shell would expand is not decidable here.
    const w = raw.replace(/^(['"])(.*)\1$/, '$2');
    if (!w || /[$`(){}<>|;&*?[\]\\'"!~]/.test(w)) return undefined;
    if (w.startsWith('-')) return undefined;
    return w;
  }
  return undefined;
}

function executable(file: string): boolean {
  try {
    if (!statSync(file).isFile()) return false;
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * Where `program` resolves the way /bin/sh would find it: a path (relative to `cwd`) or a name
 * searched in `pathEnv`. Undefined when it is not there or not executable.
 */
export function findProgram(
  program: string,
  pathEnv: string | undefined,
  cwd: string,
): string | undefined {
  if (program.includes('/')) {
    const file = isAbsolute(program) ? program : resolve(cwd, program);
    return executable(file) ? file : undefined;
  }
  for (const dir of (pathEnv ?? '').split(':')) {
    if (!dir) continue;
    const file = join(dir, program);
    if (executable(file)) return file;
  }
  return undefined;
}

/** Shell builtins and keywords: always there. */
export const SHELL_BUILTINS = new Set([
  'true',
  'false',
  ':',
  'echo',
  'printf',
  'test',
  '[',
  'cd',
  'set',
  'exit',
  'if',
  'for',
  'while',
  'case',
  'eval',
  '.',
]);
