#!/usr/bin/env node
/**
 * Recreates one slot's database from its template: the before-job step of
 * `env.postgres.resetPerIssue`. The agent-runner runs it (as a plain command, it knows
 * nothing about Postgres) after it claimed a job and before the agent starts.
 *   SUPERVISOR_RESET_PG_URL       admin URL of the shared server
 *   SUPERVISOR_RESET_PG_DB        the slot's database (a plain lower-case name)
 *   SUPERVISOR_RESET_PG_TEMPLATE  template to clone (empty: an empty database)
 */
import { coerceError } from '../errors.js';
import { recreateDatabase } from './postgres.js';

async function main(): Promise<void> {
  const url = process.env.SUPERVISOR_RESET_PG_URL;
  const db = process.env.SUPERVISOR_RESET_PG_DB;
  const template = process.env.SUPERVISOR_RESET_PG_TEMPLATE || undefined;
  if (!url || !db)
    throw new Error(
      'SUPERVISOR_RESET_PG_URL and SUPERVISOR_RESET_PG_DB must be set',
    );
  // Only a slot's own database is ever dropped here.
  if (!/agent_\d{3}$/.test(db))
    throw new Error(
      `refusing to reset "${db}": not a slot database (<prefix>agent_NNN)`,
    );
  await recreateDatabase(url, db, template);
  process.stdout.write(
    `database ${db} recreated${template ? ` from ${template}` : ''}\n`,
  );
}

main().catch((err) => {
  process.stderr.write(`${coerceError(err).message}\n`);
  process.exit(1);
});
