import type { Db } from '../store/db.js';

/** What one slot holds on the shared infrastructure (a row of `env_allocations`). */
export interface EnvAllocation {
  slot: string;
  /** `pending` while a first allocation is being verified (ports bound, database created). */
  state: 'pending' | 'ready';
  portStart: number | null;
  portCount: number | null;
  /** Named ports as last exported (`{ PORT: 8011, APP_PORT: 8011, VITE_PORT: 8012 }`). */
  ports: Record<string, number> | null;
  redisDb: number | null;
  postgresDb: string | null;
  createdAt: number;
  updatedAt: number;
}

interface Row {
  slot: string;
  state: 'pending' | 'ready';
  port_start: number | null;
  port_count: number | null;
  ports: string | null;
  redis_db: number | null;
  postgres_db: string | null;
  created_at: number;
  updated_at: number;
}

function fromRow(r: Row): EnvAllocation {
  return {
    slot: r.slot,
    state: r.state,
    portStart: r.port_start,
    portCount: r.port_count,
    ports: r.ports ? (JSON.parse(r.ports) as Record<string, number>) : null,
    redisDb: r.redis_db,
    postgresDb: r.postgres_db,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
  };
}

export type AllocationPatch = Partial<
  Pick<
    EnvAllocation,
    'state' | 'portStart' | 'portCount' | 'ports' | 'redisDb' | 'postgresDb'
  >
>;

/**
 * The `env_allocations` table. Every write that picks a resource runs inside
 * `transaction()` (BEGIN IMMEDIATE: SQLite's write lock), so choosing "the lowest free one"
 * and taking it is one atomic step across threads and processes; the UNIQUE constraints
 * are the backstop.
 */
export class EnvAllocationStore {
  constructor(
    private readonly db: Db,
    private readonly now: () => number = Date.now,
  ) {}

  get(slot: string): EnvAllocation | undefined {
    const r = this.db
      .prepare('SELECT * FROM env_allocations WHERE slot = ?')
      .get(slot) as Row | undefined;
    return r ? fromRow(r) : undefined;
  }

  list(): EnvAllocation[] {
    return (
      this.db
        .prepare('SELECT * FROM env_allocations ORDER BY slot')
        .all() as Row[]
    ).map(fromRow);
  }

  /** Runs `fn` under SQLite's write lock (BEGIN IMMEDIATE). */
  transaction<T>(fn: () => T): T {
    return this.db.transaction(fn).immediate();
  }

  insert(slot: string): EnvAllocation {
    const t = this.now();
    this.db
      .prepare(
        `INSERT INTO env_allocations (slot, state, created_at, updated_at) VALUES (?, 'pending', ?, ?)`,
      )
      .run(slot, t, t);
    return this.get(slot)!;
  }

  update(slot: string, patch: AllocationPatch): EnvAllocation {
    const cols: string[] = [];
    const vals: unknown[] = [];
    const set = (col: string, v: unknown) => {
      cols.push(`${col} = ?`);
      vals.push(v);
    };
    if (patch.state !== undefined) set('state', patch.state);
    if (patch.portStart !== undefined) set('port_start', patch.portStart);
    if (patch.portCount !== undefined) set('port_count', patch.portCount);
    if (patch.ports !== undefined)
      set('ports', patch.ports === null ? null : JSON.stringify(patch.ports));
    if (patch.redisDb !== undefined) set('redis_db', patch.redisDb);
    if (patch.postgresDb !== undefined) set('postgres_db', patch.postgresDb);
    set('updated_at', this.now());
    this.db
      .prepare(`UPDATE env_allocations SET ${cols.join(', ')} WHERE slot = ?`)
      .run(...vals, slot);
    return this.get(slot)!;
  }

  remove(slot: string): void {
    this.db.prepare('DELETE FROM env_allocations WHERE slot = ?').run(slot);
  }

  /** Port ranges held by other slots: `[start, start + count)`. */
  portRanges(exceptSlot: string): Array<[number, number]> {
    const rows = this.db
      .prepare(
        'SELECT port_start, port_count FROM env_allocations WHERE port_start IS NOT NULL AND slot <> ?',
      )
      .all(exceptSlot) as Array<{ port_start: number; port_count: number }>;
    return rows.map((r) => [r.port_start, r.port_start + r.port_count]);
  }

  redisDbs(exceptSlot: string): Set<number> {
    const rows = this.db
      .prepare(
        'SELECT redis_db FROM env_allocations WHERE redis_db IS NOT NULL AND slot <> ?',
      )
      .all(exceptSlot) as Array<{ redis_db: number }>;
    return new Set(rows.map((r) => r.redis_db));
  }
}

/** A database an environment made (or took over), kept until dropped. */
export interface KnownDatabase {
  name: string;
  /** `host:port` of the Postgres server ('' when recorded before servers were). */
  server: string;
  slot: string;
  /** Whether the supervisor created it (false: it existed and was reused). */
  created: boolean;
  createdAt: number;
}

/** The `env_databases` table: what `cleanup --drop-databases` drops, even after the slot went. */
export class KnownDatabaseStore {
  constructor(
    private readonly db: Db,
    private readonly now: () => number = Date.now,
  ) {}

  remember(name: string, server: string, slot: string, created: boolean): void {
    this.db
      .prepare(
        `INSERT INTO env_databases (name, server, slot, created, created_at) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (name) DO UPDATE SET server = excluded.server, slot = excluded.slot,
           created = MAX(created, excluded.created)`,
      )
      .run(name, server, slot, created ? 1 : 0, this.now());
  }

  forget(name: string): void {
    this.db.prepare('DELETE FROM env_databases WHERE name = ?').run(name);
  }

  list(): KnownDatabase[] {
    return (
      this.db
        .prepare('SELECT * FROM env_databases ORDER BY name')
        .all() as Array<{
        name: string;
        server: string;
        slot: string;
        created: number;
        created_at: number;
      }>
    ).map((r) => ({
      name: r.name,
      server: r.server,
      slot: r.slot,
      created: r.created === 1,
      createdAt: r.created_at,
    }));
  }
}

/** True for SQLite's UNIQUE-constraint failure (a lost race the transaction should have prevented). */
export function isUniqueViolation(err: unknown): boolean {
  return (
    typeof err === 'object' &&
    err !== null &&
    (err as { code?: string }).code === 'SQLITE_CONSTRAINT_UNIQUE'
  );
}
