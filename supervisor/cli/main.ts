#!/usr/bin/env node
import './heap-policy.js';
import { Command, CommanderError } from 'commander';
import { ZodError } from 'zod';
import { SupervisorError, coerceError, redactSecrets } from '../errors.js';
import { registerComposeConfigCommand, registerImageCommand } from './image.js';
import { registerInfraCommand } from './infra.js';
import { registerIssueCommands } from './issues.js';
import { registerLandCommand } from './land.js';
import { registerLifecycleCommands } from './lifecycle.js';
import { registerDashboardCommand } from './dashboard.js';
import { registerDoctorCommand } from './doctor.js';
import { registerLogsCommand } from './logs.js';
import { registerMaintenanceCommands } from './maintenance.js';
import { registerPauseCommands } from './pause.js';
import { registerRemoteCommands } from './remote.js';
import { registerRestartCommand } from './restart.js';
import type { GlobalOpts } from './output.js';
import { damagedDatabaseError } from '../store/db.js';
import { forTerminal, setRawOutput } from './terminal.js';

const USAGE_CODES = new Set([
  'ERR_SUP_USAGE',
  'ERR_SUP_SCALE_LIMIT',
  'ERR_SUP_INVALID_ISSUE',
]);

function build(): Command {
  const program = new Command('supervisor')
    .description(
      'Run many AI coding agents in parallel on one repository, each in its own git worktree.',
    )
    .version('0.1.0')
    .option(
      '--repo <dir>',
      'the git repository to work on (default: current directory)',
    )
    .option(
      '--raw',
      'print issue text and agent output as they are (control characters and bidi overrides are escaped by default)',
    )
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();
  program.configureOutput({ writeErr: (s) => process.stderr.write(s) });
  program.hook('preAction', () =>
    setRawOutput(program.opts<GlobalOpts>().raw === true),
  );
  const globals = (): GlobalOpts => program.opts<GlobalOpts>();
  registerMaintenanceCommands(program, globals);
  registerIssueCommands(program, globals);
  registerLandCommand(program, globals);
  registerLifecycleCommands(program, globals);
  registerRestartCommand(program, globals);
  registerPauseCommands(program, globals);
  registerLogsCommand(program, globals);
  registerRemoteCommands(program, globals);
  registerDashboardCommand(program, globals);
  registerDoctorCommand(program, globals);
  registerInfraCommand(program, globals);
  registerImageCommand(program, globals);
  registerComposeConfigCommand(program, globals);
  for (const cmd of program.commands) {
    cmd.exitOverride();
    for (const sub of cmd.commands) sub.exitOverride();
  }
  return program;
}

/** What to do about an SQLite failure that surfaced past the store (a write to .supervisor/supervisor.db). */
function sqliteHint(code: unknown): string | undefined {
  if (typeof code !== 'string' || !code.startsWith('SQLITE_')) return undefined;
  if (
    code.startsWith('SQLITE_READONLY') ||
    code.startsWith('SQLITE_PERM') ||
    code.startsWith('SQLITE_CANTOPEN')
  ) {
    return 'the supervisor database .supervisor/supervisor.db (or its directory) is not writable by this user: fix the permissions, or run as its owner';
  }
  if (code.startsWith('SQLITE_FULL') || code === 'SQLITE_IOERR_WRITE')
    return 'the disk holding .supervisor/ is full: free some space and run the command again';
  if (code.startsWith('SQLITE_CORRUPT') || code === 'SQLITE_NOTADB') {
    return 'the supervisor database .supervisor/supervisor.db is damaged: restore it from a backup, or move it aside and run `supervisor init` again';
  }
  if (code.startsWith('SQLITE_BUSY'))
    return 'another process holds the supervisor database locked; try again';
  return undefined;
}

/** A schema failure that escaped its caller, said as a list instead of the validator's JSON. */
function friendlyValidationError(raw: unknown): SupervisorError | undefined {
  if (!(raw instanceof ZodError)) return undefined;
  const lines = raw.issues.map(
    (i) => `  ${i.path.join('.') || '(value)'}: ${i.message}`,
  );
  return new SupervisorError(
    'ERR_SUP_CONFIG',
    `invalid value:\n${lines.join('\n')}`,
    {
      hint: 'check flags, SUPERVISOR_* environment variables and supervisor.config.json',
    },
  );
}

/** Exits once stdout and stderr are flushed (a pipe would otherwise lose a large --json). */
function exit(code: number): void {
  const flushed = (s: NodeJS.WriteStream) =>
    new Promise<void>((r) =>
      s.writableLength === 0 ? r() : s.once('drain', () => r()),
    );
  void Promise.all([flushed(process.stdout), flushed(process.stderr)]).then(
    () => process.exit(code),
  );
}

/** The only place that ends the process: 0 ok, 1 failure, 2 usage error. */
async function main(argv: string[]): Promise<void> {
  try {
    // Bare `supervisor`: the help, as `docker` and `pm2` print theirs.
    if (argv.length <= 2) {
      build().outputHelp();
      process.exitCode = 0;
      return;
    }
    await build().parseAsync(argv);
    process.exitCode = 0;
  } catch (raw) {
    if (raw instanceof CommanderError) {
      return exit(
        raw.code === 'commander.helpDisplayed' ||
          raw.code === 'commander.version' ||
          raw.code === 'commander.help'
          ? 0
          : 2,
      );
    }
    const err =
      damagedDatabaseError('.supervisor/supervisor.db', raw) ??
      friendlyValidationError(raw) ??
      coerceError(raw);
    if (err instanceof SupervisorError) {
      process.stderr.write(`error: ${forTerminal(err.message)}\n`);
      if (err.hint) process.stderr.write(`hint: ${forTerminal(err.hint)}\n`);
      return exit(USAGE_CODES.has(err.code) ? 2 : 1);
    }
    process.stderr.write(`error: ${forTerminal(redactSecrets(err.message))}\n`);
    const hint = sqliteHint((err as { code?: unknown }).code);
    if (hint) process.stderr.write(`hint: ${hint}\n`);
    if (process.env.SUPERVISOR_DEBUG)
      process.stderr.write(`${err.stack ?? ''}\n`);
    exit(1);
  }
}

// A reader that went away (`status | head -1`) ends the command quietly, as it would end `cat`.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE' || err.code === 'ERR_STREAM_DESTROYED')
      process.exit(0);
    throw err;
  });
}

void main(process.argv).then(() => {
  // Connections a command leaves open must not keep it alive.
  if (process.exitCode === 0) exit(0);
});
