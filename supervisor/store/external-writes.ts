import { watch, type FSWatcher } from 'node:fs';
import { basename, dirname } from 'node:path';
import type { Db } from './db.js';

/**
 * Calls `onChange` soon after another connection commits to the database (`supervisor issue
 * add`, the API in another process), so the feeder need not wait for its next interval.
 * Every commit lands in the WAL file, which wakes us through the file system; SQLite's
 * `data_version` then tells other connections' commits from our own, without reading a table.
 * Returns a function that stops watching; where the directory cannot be watched it does
 * nothing (the caller's interval still runs).
 */
export function watchExternalWrites(db: Db, dbFile: string, onChange: () => void): () => void {
  const version = db.prepare('PRAGMA data_version').pluck();
  let last = version.get() as number;
  let pending = false;
  const wal = `${basename(dbFile)}-wal`;
  let watcher: FSWatcher | undefined;
  const check = () => {
    pending = false;
    if (!db.open) return;
    const now = version.get() as number;
    if (now === last) return;
    last = now;
    onChange();
  };
  try {
    watcher = watch(dirname(dbFile), { persistent: false }, (_event, file) => {
      if (file !== wal || pending) return;
      pending = true;
      setImmediate(check);
    });
    watcher.on('error', () => watcher?.close());
  } catch {
    watcher = undefined;
  }
  return () => watcher?.close();
}
