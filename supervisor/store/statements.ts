import type Database from 'better-sqlite3';

const statements = new WeakMap<
  Database.Database,
  Map<string, Database.Statement>
>();

/**
 * A statement compiled once per connection: compiling costs more than running these small
 * statements, and the recorder asks for the same ones per result (settings, history context).
 */
export function cachedStatement(
  db: Database.Database,
  text: string,
): Database.Statement {
  let forDb = statements.get(db);
  if (!forDb) statements.set(db, (forDb = new Map()));
  let st = forDb.get(text);
  if (!st) forDb.set(text, (st = db.prepare(text)));
  return st;
}
