import { chmodSync, closeSync, openSync, readSync, statSync } from 'node:fs';
import Database from 'better-sqlite3';
import { SupervisorError } from '../errors.js';
import { installHistory } from './history.js';
import { cachedStatement } from './statements.js';
import { landingMigration } from './landing-schema.js';
import { READ_MODEL_MIGRATION, ensureReadModel } from './read-model.js';
import { USAGE_TOTALS_MIGRATION } from './usage-totals.js';

export type Db = Database.Database;

/**
 * A migration: SQL, or a function for what SQL alone cannot say (rebuilding a table whose
 * columns other migrations may have added to).
 */
type Migration = string | ((db: Db) => void);

/** Ordered migrations; index + 1 is the schema version stored in `user_version`. */
const MIGRATIONS: readonly Migration[] = [
  `
  CREATE TABLE issues (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    title       TEXT    NOT NULL,
    body        BLOB    NOT NULL DEFAULT x'',
    priority    TEXT    NOT NULL CHECK (priority IN ('urgent','high','medium','low')),
    status      TEXT    NOT NULL DEFAULT 'open'
                CHECK (status IN ('open','queued','in_progress','done','failed')),
    agent       TEXT,
    branch      TEXT,
    commit_sha  TEXT,
    attempts    INTEGER NOT NULL DEFAULT 0,
    job_id      TEXT UNIQUE,
    error       TEXT,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
  );
  CREATE INDEX issues_by_status ON issues (status, id);

  CREATE TABLE runs (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    issue_id      INTEGER NOT NULL REFERENCES issues (id),
    job_id        TEXT    NOT NULL,
    attempt       INTEGER NOT NULL,
    agent         TEXT,
    started_at    INTEGER,
    finished_at   INTEGER,
    outcome       TEXT    NOT NULL DEFAULT 'running'
                  CHECK (outcome IN ('running','succeeded','failed','lost','released')),
    exit_code     INTEGER,
    base_sha      TEXT,
    commit_sha    TEXT,
    files_changed INTEGER,
    insertions    INTEGER,
    deletions     INTEGER,
    duration_ms   INTEGER,
    log_path      TEXT,
    error         TEXT,
    UNIQUE (job_id, attempt)
  );
  CREATE INDEX runs_by_issue ON runs (issue_id, attempt);

  CREATE TABLE slots (
    id          TEXT    PRIMARY KEY,
    number      INTEGER NOT NULL UNIQUE,
    worktree    TEXT    NOT NULL,
    branch      TEXT    NOT NULL,
    state       TEXT    NOT NULL DEFAULT 'stopped',
    pid         INTEGER,
    container_id TEXT,
    health      TEXT,
    restarts    INTEGER NOT NULL DEFAULT 0,
    last_error  TEXT,
    state_since INTEGER NOT NULL,
    created_at  INTEGER NOT NULL
  );

  CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
  );
  `,
  // Per-slot dev environments (supervisor/env). The unique constraints are what keeps two
  // concurrent allocations from ever handing out the same port block, Redis DB or database.
  `
  CREATE TABLE env_allocations (
    slot         TEXT    PRIMARY KEY,
    state        TEXT    NOT NULL DEFAULT 'pending' CHECK (state IN ('pending','ready')),
    port_start   INTEGER UNIQUE,
    port_count   INTEGER,
    ports        TEXT,
    redis_db     INTEGER UNIQUE,
    postgres_db  TEXT    UNIQUE,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    CHECK ((port_start IS NULL) = (port_count IS NULL))
  );
  `,
  // Landing (supervisor/land): the lifecycle beyond done, its history, and landing attempts.
  landingMigration,
  // Databases the environments made or took, remembered until dropped (the allocation row goes
  // at cleanup; without this, a later `cleanup --drop-databases` forgot them).
  `
  CREATE TABLE env_databases (
    name        TEXT    PRIMARY KEY,
    server      TEXT    NOT NULL,
    slot        TEXT    NOT NULL,
    created     INTEGER NOT NULL DEFAULT 0,
    created_at  INTEGER NOT NULL
  );
  INSERT OR IGNORE INTO env_databases (name, server, slot, created, created_at)
    SELECT postgres_db, '', slot, 0, created_at FROM env_allocations WHERE postgres_db IS NOT NULL;
  `,
  // Flat reads (issue 16): indexes for the bounded reads of status, the page and `issue list`,
  // and aggregates kept up to date by triggers (see read-model.ts), backfilled here once.
  READ_MODEL_MIGRATION,
  // Why an attempt failed, as a stable code (contract/errors.ts ATTEMPT_FAILURE_KINDS).
  `ALTER TABLE runs ADD COLUMN error_kind TEXT;`,
  // Tokens and cost per run, as the agent reported them (docs/agents.md).
  `
  ALTER TABLE runs ADD COLUMN cost_usd REAL;
  ALTER TABLE runs ADD COLUMN input_tokens INTEGER;
  ALTER TABLE runs ADD COLUMN output_tokens INTEGER;
  ALTER TABLE runs ADD COLUMN cache_read_tokens INTEGER;
  ALTER TABLE runs ADD COLUMN cache_write_tokens INTEGER;
  ALTER TABLE runs ADD COLUMN model TEXT;
  ALTER TABLE runs ADD COLUMN turns INTEGER;
  `,
  // Where a run's cost comes from, and tokens and cost totalled (usage-totals.ts).
  USAGE_TOTALS_MIGRATION,
];

/** Why a database file cannot be used, with what to do about it. */
function databaseError(
  file: string,
  what: string,
  cause?: unknown,
): SupervisorError {
  const code = (cause as { code?: string } | undefined)?.code ?? '';
  const permission =
    code === 'SQLITE_CANTOPEN' ||
    code === 'SQLITE_READONLY' ||
    code === 'SQLITE_PERM' ||
    code === 'SQLITE_AUTH';
  return new SupervisorError(
    'ERR_SUP_DATABASE',
    `cannot open the supervisor database ${file}: ${what}`,
    {
      hint: permission
        ? `check that ${file} and its directory exist and are readable and writable by this user (ls -l ${file})`
        : 'the file is damaged or not an SQLite database: restore it from a backup, or move it aside (mv it to a backup name) and run `supervisor init` again ' +
          '(its issues are then forgotten; their issue/<id> branches stay in git)',
      ...(cause === undefined ? {} : { cause }),
    },
  );
}

export interface OpenDatabaseOptions {
  readonly?: boolean;
  /**
   * Run `PRAGMA quick_check` before use: `init`, `start` and `doctor` do (it reads the whole
   * file: +165 ms at 100k issues); other commands only get the constant-time checks below, and a
   * damaged page they touch fails their query (SQLITE_CORRUPT, reported with the same hint).
   */
  check?: boolean;
}

/** The page count the header claims and the page size (bytes 16-17 and 28-31 of the header). */
function headerClaims(
  file: string,
): { pages: number; pageSize: number } | undefined {
  let fd: number | undefined;
  try {
    fd = openSync(file, 'r');
    const h = Buffer.alloc(100);
    if (readSync(fd, h, 0, 100, 0) < 100) return undefined;
    if (h.toString('latin1', 0, 16) !== 'SQLite format 3\0') return undefined;
    const raw = h.readUInt16BE(16);
    const pageSize = raw === 1 ? 65536 : raw;
    // The in-header size is valid only when "version-valid-for" matches the change counter.
    if (h.readUInt32BE(92) !== h.readUInt32BE(24)) return undefined;
    return { pages: h.readUInt32BE(28), pageSize };
  } catch {
    return undefined;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

export function openDatabase(file: string, opts: OpenDatabaseOptions = {}): Db {
  // An existing file of 0 bytes is a database that was truncated (init never leaves one empty):
  // SQLite would silently take it for a new, empty database and the issues would be forgotten.
  let size: number | undefined;
  try {
    size = statSync(file).size;
  } catch {
    /* a new database, or not readable: reported by the open below */
  }
  if (size === 0)
    throw databaseError(file, 'the file is empty (0 bytes): it was truncated');
  // A file shorter than its header says was cut off: found without reading the pages.
  const claims = size === undefined ? undefined : headerClaims(file);
  if (claims && size !== undefined && size < claims.pages * claims.pageSize)
    throw databaseError(
      file,
      `the database is damaged (the file is ${size} bytes, its header says ${claims.pages * claims.pageSize}): it was truncated`,
    );
  let db: Db;
  try {
    db = new Database(file, {
      fileMustExist: opts.readonly === true,
      readonly: opts.readonly === true,
    });
    db.pragma('journal_mode = WAL');
    db.pragma('busy_timeout = 5000');
    db.pragma('foreign_keys = ON');
    db.pragma('synchronous = NORMAL');
    // Reads the schema (page 1): a file that is not a database fails here, before any write.
    db.prepare('SELECT COUNT(*) FROM sqlite_master').get();
  } catch (cause) {
    throw databaseError(file, (cause as Error).message, cause);
  }
  // It holds the Redis URL the supervisor runs with (password included, so that CLI commands find
  // it): only its owner may read it. SQLite gives the -wal and -shm files the same mode.
  if (size === undefined && !opts.readonly) {
    try {
      chmodSync(file, 0o600);
    } catch {
      /* not ours to change (e.g. a shared filesystem); the directory's mode still applies */
    }
  }
  if (opts.check) checkIntegrity(db, file);
  if (!opts.readonly) {
    try {
      migrate(db);
      ensureReadModel(db);
      installHistory(db, 'supervisor');
    } catch (cause) {
      db.close();
      if (cause instanceof SupervisorError) throw cause;
      throw databaseError(file, (cause as Error).message, cause);
    }
  }
  return db;
}

/**
 * Fails fast on a damaged database, before any write. quick_check reports damage as rows (it
 * throws only when the header itself is unreadable). Closes `db` when it fails.
 */
export function checkIntegrity(db: Db, file: string): void {
  let check: string;
  try {
    check = String(db.pragma('quick_check(1)', { simple: true }));
  } catch (cause) {
    db.close();
    throw databaseError(file, (cause as Error).message, cause);
  }
  if (check !== 'ok') {
    db.close();
    throw databaseError(
      file,
      `the database is damaged (${check.replace(/\s+/g, ' ').trim().slice(0, 200)})`,
    );
  }
}

/** A query that hit a damaged page (SQLITE_CORRUPT), as the error opening it would have been. */
export function damagedDatabaseError(
  file: string,
  cause: unknown,
): SupervisorError | undefined {
  const code = (cause as { code?: unknown } | undefined)?.code;
  if (typeof code !== 'string') return undefined;
  if (!code.startsWith('SQLITE_CORRUPT') && code !== 'SQLITE_NOTADB')
    return undefined;
  return databaseError(
    file,
    `the database is damaged (${(cause as Error).message})`,
    cause,
  );
}

function migrate(db: Db): void {
  const current = db.pragma('user_version', { simple: true }) as number;
  if (current > MIGRATIONS.length) {
    throw new SupervisorError(
      'ERR_SUP_DATABASE',
      `database schema version ${current} is newer than this supervisor (${MIGRATIONS.length})`,
      {
        hint: 'upgrade agent-supervisor',
      },
    );
  }
  for (let v = current; v < MIGRATIONS.length; v++) {
    const m = MIGRATIONS[v]!;
    db.transaction(() => {
      if (typeof m === 'string') db.exec(m);
      else m(db);
      db.pragma(`user_version = ${v + 1}`);
    }).immediate();
  }
}

export function getSetting(db: Db, key: string): string | undefined {
  const row = cachedStatement(
    db,
    'SELECT value FROM settings WHERE key = ?',
  ).get(key) as { value: string } | undefined;
  return row?.value;
}

export function setSetting(db: Db, key: string, value: string): void {
  cachedStatement(
    db,
    'INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value',
  ).run(key, value);
}
