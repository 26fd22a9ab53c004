import {
  closeSync,
  constants,
  fchownSync,
  openSync,
  rmSync,
  writeSync,
} from 'node:fs';

/** Who the files a runner writes for its slot belong to (the agent's user, when it has one). */
export interface FileOwner {
  uid: number;
  gid: number;
}

const { O_WRONLY, O_CREAT, O_EXCL, O_APPEND, O_NOFOLLOW } = constants;

function giveTo(fd: number, owner: FileOwner | undefined): void {
  if (owner) fchownSync(fd, owner.uid, owner.gid);
}

/**
 * Writes a file in a slot's run or log directory, which the slot's agent can write too: the name
 * is replaced, never followed (a symbolic link planted there would make the runner — root in a
 * Docker container — write wherever it points), and the file is given to `owner`, so the host
 * sees one owner for everything of the slot.
 */
export function replaceSlotFile(
  path: string,
  data: string | Uint8Array,
  owner?: FileOwner,
): void {
  rmSync(path, { force: true });
  const fd = openSync(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0o644);
  try {
    giveTo(fd, owner);
    writeSync(fd, typeof data === 'string' ? Buffer.from(data) : data);
  } finally {
    closeSync(fd);
  }
}

/** Opens a slot file for appending (created if missing), never through a symbolic link. */
export function appendSlotFile(path: string, owner?: FileOwner): number {
  const fd = openSync(path, O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW, 0o644);
  try {
    giveTo(fd, owner);
  } catch (err) {
    closeSync(fd);
    throw err;
  }
  return fd;
}
