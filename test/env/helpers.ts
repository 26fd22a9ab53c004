import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import { readFileSync } from 'node:fs';
import pg from 'pg';

export const PG_ADMIN = 'postgres://postgres@127.0.0.1:5432/postgres';
export const REDIS = 'redis://127.0.0.1:6379';

/** A unique database-name prefix for one test, e.g. `t3fa9c1_`. */
export function randomPrefix(): string {
  return `t${randomBytes(4).toString('hex')}_`;
}

/** The first port the kernel hands to outgoing connections (Linux; 32768 elsewhere). */
function ephemeralLow(): number {
  try {
    const low = Number(
      readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').split(
        /\s+/,
      )[0],
    );
    return Number.isInteger(low) && low > 12_000 ? low : 32_768;
  } catch {
    return 32_768;
  }
}

/**
 * A port base no other test file is likely to pick: blocks of 10 from 10000 up to below the
 * kernel's ephemeral range. Inside that range any outgoing connection (a Redis client, git, the
 * browser) may hold a port of the block for a moment, and a test that expects the block free
 * would see it taken.
 */
export function randomPortBase(): number {
  const top = ephemeralLow() - 6_000; // tests also use base + 5000
  return 10_000 + randomInt(0, Math.floor((top - 10_000) / 10)) * 10;
}

export async function pgQuery<T extends pg.QueryResultRow = any>(
  sql: string,
  params: unknown[] = [],
  url = PG_ADMIN,
): Promise<T[]> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return (
      params.length ? await c.query<T>(sql, params) : await c.query<T>(sql)
    ).rows;
  } finally {
    await c.end();
  }
}

export async function databasesWithPrefix(prefix: string): Promise<string[]> {
  const rows = await pgQuery<{ datname: string }>(
    'SELECT datname FROM pg_database WHERE starts_with(datname, $1) ORDER BY datname',
    [prefix],
  );
  return rows.map((r) => r.datname);
}

/** Drops every database a test created (its names all start with the test's prefix). */
export async function dropDatabasesWithPrefix(prefix: string): Promise<void> {
  if (!/^t[0-9a-f]{8}_$/.test(prefix))
    throw new Error(`refusing to drop databases with prefix ${prefix}`);
  for (const name of await databasesWithPrefix(prefix)) {
    await pgQuery(`ALTER DATABASE "${name}" IS_TEMPLATE false`).catch(
      () => undefined,
    );
    await pgQuery(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
  }
}

/** Another program holding ports (on 0.0.0.0, as a dev server would). */
export async function holdPorts(
  ports: number[],
  host = '0.0.0.0',
): Promise<{ child: ChildProcess; release: () => Promise<void> }> {
  const script = `
    const net = require('node:net');
    const ports = ${JSON.stringify(ports)};
    let n = 0;
    for (const p of ports) net.createServer().listen(p, ${JSON.stringify(host)}, () => { if (++n === ports.length) console.log('ready'); });
    setInterval(() => {}, 1000);
  `;
  const child = spawn(process.execPath, ['-e', script], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on(
      'data',
      (d: Buffer) => d.toString().includes('ready') && resolve(),
    );
    child.once('exit', (code) =>
      reject(new Error(`port holder exited ${code}`)),
    );
  });
  return {
    child,
    release: () =>
      new Promise<void>((r) => {
        if (child.exitCode !== null || child.signalCode !== null) return r();
        child.once('exit', () => r());
        child.kill('SIGKILL');
      }),
  };
}
