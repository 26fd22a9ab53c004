import type pg from 'pg';
import { SupervisorError, coerceError, redactSecrets } from '../errors.js';

/** What an unquoted, lower-case Postgres identifier may be (63 bytes at most). */
const IDENT = /^[a-z_][a-z0-9_]{0,62}$/;
const TEMPLATE = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;
const PREFIX = /^[a-z_][a-z0-9_]{0,30}$/;

/** `"name"` with inner quotes doubled: safe whatever `name` is (we validate names anyway). */
export function quoteIdent(name: string): string {
  if (name.length === 0 || name.includes('\0'))
    throw new SupervisorError(
      'ERR_SUP_CONFIG',
      'an empty identifier or one with a NUL byte cannot be quoted',
    );
  return `"${name.replace(/"/g, '""')}"`;
}

/**
 * The database of a slot: `<prefix><slot>` lower-cased with `-` → `_` (`app_agent_001`).
 * Refuses anything that would not be a plain identifier, even though the config schema
 * already checked the prefix: these names end up in SQL.
 */
export function databaseNameFor(prefix: string, slot: string): string {
  if (!PREFIX.test(prefix)) {
    throw new SupervisorError(
      'ERR_SUP_CONFIG',
      `env.postgres.prefix "${prefix}" is not a safe database name prefix`,
      {
        hint: 'use lower-case letters, digits and _ (starting with a letter or _), at most 31 characters, e.g. "app_"',
      },
    );
  }
  if (!/^agent-\d{3}$/.test(slot))
    throw new SupervisorError(
      'ERR_SUP_CONFIG',
      `"${slot}" is not a slot id (agent-NNN)`,
    );
  const name = `${prefix}${slot}`.toLowerCase().replace(/[^a-z0-9_]/g, '_');
  assertIdent(name);
  return name;
}

export function assertIdent(name: string): void {
  if (!IDENT.test(name))
    throw new SupervisorError(
      'ERR_SUP_CONFIG',
      `"${name}" is not a plain lower-case database name`,
      { hint: 'names may hold a-z, 0-9 and _' },
    );
}

export function assertTemplate(name: string): void {
  if (!TEMPLATE.test(name)) {
    throw new SupervisorError(
      'ERR_SUP_CONFIG',
      `env.postgres.template "${name}" is not a plain database name`,
      { hint: 'letters, digits and _ only, at most 63 characters' },
    );
  }
}

/** `host:port` of a Postgres URL: which server a remembered database lives on. */
export function postgresServer(adminUrl: string): string {
  try {
    const u = new URL(adminUrl);
    const host = u.hostname === 'localhost' ? '127.0.0.1' : u.hostname;
    return `${host}:${u.port || '5432'}`;
  } catch {
    return '';
  }
}

/** The admin URL with its database replaced: what the slot's app connects with. */
export function databaseUrl(adminUrl: string, db: string): string {
  const u = new URL(adminUrl);
  u.pathname = `/${db}`;
  return u.toString();
}

interface PgError extends Error {
  code?: string;
}

const safe = (url: string) => redactSecrets(url);

/** A Postgres failure as a SupervisorError that says what to do. */
export function postgresError(
  err: unknown,
  adminUrl: string,
  doing: string,
): SupervisorError {
  const e = coerceError(err) as PgError;
  const code = e.code ?? '';
  let user = 'postgres';
  try {
    user =
      decodeURIComponent(new URL(adminUrl).username) ||
      process.env.PGUSER ||
      process.env.USER ||
      'postgres';
  } catch {
    /* keep the default */
  }
  if (
    [
      'ECONNREFUSED',
      'ENOTFOUND',
      'EHOSTUNREACH',
      'ETIMEDOUT',
      'ECONNRESET',
      'EAI_AGAIN',
    ].includes(code) ||
    /timeout|terminated unexpectedly/i.test(e.message)
  ) {
    return new SupervisorError(
      'ERR_SUP_POSTGRES',
      `Postgres at ${safe(adminUrl)} is unreachable (${code || e.message}) while trying to ${doing}`,
      {
        hint: 'start it (`supervisor infra up`, or your local install), fix POSTGRES_URL / env.postgres.url, or unset POSTGRES_URL to run without per-agent databases',
        cause: err,
      },
    );
  }
  if (code === '42501') {
    return new SupervisorError(
      'ERR_SUP_POSTGRES',
      `the Postgres role "${user}" may not create databases (${e.message}) while trying to ${doing}`,
      {
        hint: `grant it: ALTER ROLE ${quoteIdent(user)} CREATEDB; or point POSTGRES_URL at a role that has CREATEDB`,
        cause: err,
      },
    );
  }
  if (code === '3D000' || code === '28000' || code === '28P01') {
    return new SupervisorError(
      'ERR_SUP_POSTGRES',
      `Postgres refused to ${doing}: ${e.message}`,
      {
        hint:
          code === '3D000'
            ? 'create that database (the template, or the one named in POSTGRES_URL) or fix the name'
            : 'check the user and password in POSTGRES_URL',
        cause: err,
      },
    );
  }
  return new SupervisorError(
    'ERR_SUP_POSTGRES',
    `Postgres failed to ${doing}: ${e.message}${code ? ` (${code})` : ''}`,
    { cause: err },
  );
}

async function withClient<T>(
  adminUrl: string,
  doing: string,
  fn: (c: pg.Client) => Promise<T>,
): Promise<T> {
  // Loaded on first use (~15 MB resident): only supervisors with a POSTGRES_URL need it.
  const { default: postgres } = await import('pg');
  const client = new postgres.Client({
    connectionString: adminUrl,
    connectionTimeoutMillis: 3000,
    application_name: 'agent-supervisor',
  });
  client.on('error', () => undefined);
  try {
    await client.connect();
  } catch (err) {
    await client.end().catch(() => undefined);
    throw postgresError(err, adminUrl, doing);
  }
  try {
    return await fn(client);
  } catch (err) {
    throw err instanceof SupervisorError
      ? err
      : postgresError(err, adminUrl, doing);
  } finally {
    await client.end().catch(() => undefined);
  }
}

export async function databaseExists(
  adminUrl: string,
  db: string,
): Promise<boolean> {
  return withClient(
    adminUrl,
    `look up database ${db}`,
    async (c) =>
      (await c.query('SELECT 1 FROM pg_database WHERE datname = $1', [db]))
        .rowCount === 1,
  );
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function quoteLiteral(v: string): string {
  return `'${v.replace(/'/g, "''")}'`;
}

async function create(
  c: pg.Client,
  db: string,
  template: string | undefined,
): Promise<void> {
  const sql = `CREATE DATABASE ${quoteIdent(db)}${template ? ` TEMPLATE ${quoteIdent(template)}` : ''}`;
  // A template with open sessions cannot be copied (55006): wait a little for them to go.
  for (let i = 0; ; i++) {
    try {
      await c.query(sql);
      return;
    } catch (err) {
      const code = (err as PgError).code;
      if (code === '42P04') return; // created meanwhile by a concurrent call: same name, same slot
      if (code === '55006' && i < 20) {
        await sleep(250);
        continue;
      }
      if (code === '55006') {
        throw new SupervisorError(
          'ERR_SUP_POSTGRES',
          `cannot clone template "${template}" into ${db}: other sessions are connected to the template`,
          {
            hint: 'close connections to the template database (apps should never connect to it)',
            cause: err,
          },
        );
      }
      throw err;
    }
  }
}

/**
 * Makes sure the slot's database exists: created (from `template` when set) if missing,
 * reused untouched if there. Returns whether it was created by this call.
 */
export async function ensureDatabase(
  adminUrl: string,
  db: string,
  template?: string,
): Promise<boolean> {
  assertIdent(db);
  if (template) assertTemplate(template);
  return withClient(
    adminUrl,
    `create database ${db}${template ? ` from template ${template}` : ''}`,
    async (c) => {
      if (
        (await c.query('SELECT 1 FROM pg_database WHERE datname = $1', [db]))
          .rowCount === 1
      )
        return false;
      await create(c, db, template);
      return true;
    },
  );
}

/** The comment that marks a database as one slot's of one repository. */
export const ownerComment = (owner: string): string =>
  `agent-supervisor owner=${owner}`;
const ownerOfComment = (c: string | null): string | undefined =>
  c?.startsWith('agent-supervisor owner=')
    ? c.slice('agent-supervisor owner='.length)
    : undefined;

/**
 * Makes sure the slot's database exists and is this owner's (`<repository id>/<slot> <path>`):
 * created and marked with COMMENT ON DATABASE if missing; an unmarked one (made before owners
 * were recorded) is marked; one marked by another repository is not touched and its owner is
 * returned as `conflict`. Serialised across supervisors by an advisory lock on the name.
 */
export async function claimDatabase(
  adminUrl: string,
  db: string,
  owner: string,
  template?: string,
): Promise<{ created: boolean; conflict?: string }> {
  assertIdent(db);
  if (template) assertTemplate(template);
  const mine = owner.split('/')[0];
  return withClient(adminUrl, `create database ${db}`, async (c) => {
    await c.query(
      "SELECT pg_advisory_lock(hashtext('agent-supervisor:' || $1))",
      [db],
    );
    try {
      const r = await c.query<{ comment: string | null }>(
        "SELECT shobj_description(oid, 'pg_database') AS comment FROM pg_database WHERE datname = $1",
        [db],
      );
      let created = false;
      if (r.rowCount === 1) {
        const held = ownerOfComment(r.rows[0]!.comment);
        if (held && held.split('/')[0] !== mine)
          return { created, conflict: held };
      } else {
        await create(c, db, template);
        created = true;
      }
      // Marking needs the database's ownership: a database made by someone else for this slot
      // (reused as before) stays unmarked rather than failing the slot.
      await c
        .query(
          `COMMENT ON DATABASE ${quoteIdent(db)} IS ${quoteLiteral(ownerComment(owner))}`,
        )
        .catch((err: PgError) => {
          if (err.code !== '42501') throw err;
        });
      return { created };
    } finally {
      await c
        .query(
          "SELECT pg_advisory_unlock(hashtext('agent-supervisor:' || $1))",
          [db],
        )
        .catch(() => undefined);
    }
  });
}

/** The owner recorded on a database, when it is marked (for `status`). */
export async function databaseOwner(
  adminUrl: string,
  db: string,
): Promise<string | undefined> {
  assertIdent(db);
  return withClient(adminUrl, `read the owner of ${db}`, async (c) => {
    const r = await c.query<{ comment: string | null }>(
      "SELECT shobj_description(oid, 'pg_database') AS comment FROM pg_database WHERE datname = $1",
      [db],
    );
    return ownerOfComment(r.rows[0]?.comment ?? null);
  });
}

/** Drops a slot's database, disconnecting its sessions (Postgres 13+). */
export async function dropDatabase(
  adminUrl: string,
  db: string,
): Promise<void> {
  assertIdent(db);
  await withClient(adminUrl, `drop database ${db}`, async (c) => {
    await c.query(`DROP DATABASE IF EXISTS ${quoteIdent(db)} WITH (FORCE)`);
  });
}

/** Drop and create again (from the template when set): a clean database for the next issue. */
export async function recreateDatabase(
  adminUrl: string,
  db: string,
  template?: string,
): Promise<void> {
  assertIdent(db);
  if (template) assertTemplate(template);
  await withClient(adminUrl, `recreate database ${db}`, async (c) => {
    await c.query(`DROP DATABASE IF EXISTS ${quoteIdent(db)} WITH (FORCE)`);
    await create(c, db, template);
  });
}

export interface PostgresProbe {
  reachable: boolean;
  version?: string;
  user?: string;
  canCreateDb?: boolean;
  error?: string;
}

/** What answers at `adminUrl` (for `supervisor infra status`). */
export async function probePostgres(adminUrl: string): Promise<PostgresProbe> {
  try {
    return await withClient(adminUrl, 'connect', async (c) => {
      const r = await c.query<{ v: string; u: string; cdb: boolean }>(
        "SELECT current_setting('server_version') AS v, current_user AS u, (SELECT rolcreatedb OR rolsuper FROM pg_roles WHERE rolname = current_user) AS cdb",
      );
      const row = r.rows[0]!;
      return {
        reachable: true,
        version: row.v,
        user: row.u,
        canCreateDb: row.cdb,
      };
    });
  } catch (err) {
    return { reachable: false, error: coerceError(err).message };
  }
}
