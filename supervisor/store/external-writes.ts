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
export function watchExternalWrites(
  db: Db,
  dbFile: string,
  onChange: () => void,
): () => void {
  const version = db.prepare('PRAGMA data_version').pluck();
  let last = version.get() as number;
  let closed = false;
  const wal = `${basename(dbFile)}-wal`;
  let watcher: FSWatcher | undefined;
  const check = () => {
    if (closed || !db.open) return;
    const now = version.get() as number;
    if (now === last) return;
    last = now;
    onChange();
  };
  // The WAL file is written before the commit is published in the shared-memory index (whose
  // writes wake nobody), so a look right away can be too early: look again 10 and 50 ms after
  // the last write.
  let soon = false;
  let trailing: NodeJS.Timeout | undefined;
  const onWalWrite = () => {
    if (!soon) {
      soon = true;
      setImmediate(() => {
        soon = false;
        check();
      });
    }
    if (trailing) clearTimeout(trailing);
    trailing = setTimeout(() => {
      check();
      trailing = setTimeout(check, 40);
      trailing.unref();
    }, 10);
    trailing.unref();
  };
  try {
    watcher = watch(dirname(dbFile), { persistent: false }, (_event, file) => {
      if (file === wal) onWalWrite();
    });
    watcher.on('error', () => watcher?.close());
  } catch {
    watcher = undefined;
  }
  return () => {
    closed = true;
    if (trailing) clearTimeout(trailing);
    watcher?.close();
  };
}
