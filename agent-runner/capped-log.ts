import {
  closeSync,
  fstatSync,
  openSync,
  readSync,
  renameSync,
  writeSync,
} from 'node:fs';
import { Writable } from 'node:stream';
import {
  appendSlotFile,
  replaceSlotFile,
  type FileOwner,
} from '../contract/slot-files.js';

/** Reads `len` bytes of `fd` at `pos`. */
function readAt(fd: number, pos: number, len: number): Buffer {
  const buf = Buffer.alloc(len);
  let got = 0;
  while (got < len) {
    const n = readSync(fd, buf, got, len - got, pos + got);
    if (n === 0) break;
    got += n;
  }
  return buf.subarray(0, got);
}

/**
 * An attempt's log with a size cap: it keeps the first half of `maxBytes` (how the agent
 * started: the prompt it saw, the first errors) and the last half (how it ended), with one
 * line saying how much was cut between them. While the agent runs the file may grow to 1.5×
 * the cap before it is compacted (rewritten aside and renamed into place), so followers see
 * output as it comes; when it closes it is at most the cap.
 */
export class CappedLog extends Writable {
  private fd: number;
  private size: number;
  private readonly head: number;
  private readonly tail: number;
  private cut = 0;
  private compactedHead = -1;

  constructor(
    readonly file: string,
    readonly maxBytes: number,
    /** Who the log belongs to (the agent's user, when it has one: see replaceSlotFile). */
    private readonly owner?: FileOwner,
  ) {
    super();
    this.fd = appendSlotFile(file, owner);
    this.size = fstatSync(this.fd).size;
    this.head = Math.floor(maxBytes / 2);
    // Room for the marker line, so head + marker + tail stay within the cap.
    this.tail = maxBytes - this.head - 160;
  }

  override _write(
    chunk: Buffer,
    _enc: BufferEncoding,
    done: (err?: Error | null) => void,
  ): void {
    try {
      writeSync(this.fd, chunk);
      this.size += chunk.length;
      if (this.size > this.maxBytes + this.tail) this.compact();
      done();
    } catch (err) {
      done(err as Error);
    }
  }

  override _final(done: (err?: Error | null) => void): void {
    try {
      if (this.size > this.maxBytes) this.compact();
      closeSync(this.fd);
      this.fd = -1;
      done();
    } catch (err) {
      done(err as Error);
    }
  }

  /**
   * A failed write (a full disk) destroys the stream without `_final`: the file is closed here,
   * or an unlinked log would keep its space for as long as the runner lives.
   */
  override _destroy(
    err: Error | null,
    done: (err?: Error | null) => void,
  ): void {
    try {
      if (this.fd >= 0) closeSync(this.fd);
    } catch {
      // Closed by _final already.
    }
    this.fd = -1;
    done(err);
  }

  /** Head + one marker line + the last `tail` bytes, cut at line ends where there are some. */
  private compact(): void {
    const rd = openSync(this.file, 'r');
    let headBuf: Buffer;
    let tailBuf: Buffer;
    try {
      let previousMarker = 0;
      if (this.compactedHead < 0) {
        headBuf = readAt(rd, 0, this.head);
        const nl = headBuf.lastIndexOf(0x0a);
        if (nl > 0) headBuf = headBuf.subarray(0, nl + 1);
      } else {
        // Already compacted: the head stays; the old marker line is replaced.
        headBuf = readAt(rd, 0, this.compactedHead);
        previousMarker = this.markerLength(rd, this.compactedHead);
      }
      const kept = headBuf.length + previousMarker;
      const from = Math.max(kept, this.size - this.tail);
      tailBuf = readAt(rd, from, this.size - from);
      const nl = tailBuf.indexOf(0x0a);
      if (nl >= 0 && nl < tailBuf.length - 1)
        tailBuf = tailBuf.subarray(nl + 1);
      this.cut += this.size - kept - tailBuf.length;
    } finally {
      closeSync(rd);
    }
    const marker = Buffer.from(
      `[… ${this.cut} bytes of output cut: this log keeps its first and last ${Math.round(this.tail / 1024)} KiB …]\n`,
    );
    const tmp = `${this.file}.${process.pid}.tmp`;
    replaceSlotFile(tmp, Buffer.concat([headBuf, marker, tailBuf]), this.owner);
    renameSync(tmp, this.file);
    closeSync(this.fd);
    this.fd = appendSlotFile(this.file, this.owner);
    this.compactedHead = headBuf.length;
    this.size = headBuf.length + marker.length + tailBuf.length;
  }

  private markerLength(fd: number, at: number): number {
    const line = readAt(fd, at, 256);
    const nl = line.indexOf(0x0a);
    return nl < 0 ? 0 : nl + 1;
  }
}
