import { existsSync, lstatSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

/**
 * The refs under some names, read from git's files instead of a `git for-each-ref` process
 * (the runner's ref watch reads them twice per job; git took ~9 µs per loose `issue/*` ref on top
 * of a process start, ~12 ms per job by the 500th issue). Only the plain files backend is read:
 * loose ref files holding an object id, and `packed-refs`; anything else — a reftable
 * repository, a symbolic or unreadable ref, a `.lock` left in the directory, a link — answers
 * undefined and the caller asks git. A file's content is kept with its inode, size and
 * modification and change times (ns), and read again when any of them changed or when it
 * changed within the last second (the kernel stamps files with a coarse clock; a change time
 * cannot be set back). Unlike git, a ref naming a missing object is listed as it is.
 */
const SHA = /^([0-9a-f]{40}(?:[0-9a-f]{24})?)\n?$/;
const SETTLED_NS = 1_000_000_000n;

interface Kept {
  key: string;
  value: string;
  settled: boolean;
}

export class RefFiles {
  private readonly kept = new Map<string, Kept>();
  private packed: { key: string; refs: Map<string, string>; settled: boolean } =
    { key: '', refs: new Map(), settled: true };

  constructor(private readonly commonDir: string) {}

  /** Every ref equal to a name or under it (`refs/tags` → `refs/tags/*`), or undefined. */
  read(names: readonly string[]): Map<string, string> | undefined {
    if (existsSync(join(this.commonDir, 'reftable'))) return undefined;
    const nowNs = BigInt(Date.now()) * 1_000_000n;
    const loose = new Map<string, string>();
    const seen = new Set<string>();
    for (const name of names)
      if (!this.walk(name, nowNs, loose, seen)) return undefined;
    for (const path of this.kept.keys())
      if (!seen.has(path)) this.kept.delete(path);
    // packed-refs after the loose files: `git pack-refs` (the supervisor runs it every few
    // hundred branches) writes a ref into packed-refs before it removes the loose file, so read
    // in this order a ref is seen in one or the other, never missed.
    const packed = this.readPacked(nowNs, names);
    if (!packed) return undefined;
    const out = new Map(packed);
    for (const [ref, sha] of loose) out.set(ref, sha);
    return out;
  }

  private stamp(path: string, nowNs: bigint) {
    const st = lstatSync(path, { bigint: true, throwIfNoEntry: false });
    if (!st) return undefined;
    return {
      st,
      key: `${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`,
      settled: st.ctimeNs < nowNs - SETTLED_NS,
    };
  }

  /** The packed refs under `names`, parsed and filtered again only when the file changed. */
  private readPacked(
    nowNs: bigint,
    names: readonly string[],
  ): Map<string, string> | undefined {
    const path = join(this.commonDir, 'packed-refs');
    const s = this.stamp(path, nowNs);
    if (!s) return new Map();
    if (!s.st.isFile()) return undefined;
    const key = `${s.key}|${names.join(' ')}`;
    if (this.packed.key === key && this.packed.settled) return this.packed.refs;
    const refs = new Map<string, string>();
    for (const line of readFileSync(path, 'utf8').split('\n')) {
      if (!line || line.startsWith('#') || line.startsWith('^')) continue;
      const m = /^([0-9a-f]{40}(?:[0-9a-f]{24})?) (refs\/\S+)$/.exec(line);
      if (!m) return undefined;
      const ref = m[2]!;
      if (names.some((n) => ref === n || ref.startsWith(`${n}/`)))
        refs.set(ref, m[1]!);
    }
    this.packed = { key, refs, settled: s.settled };
    return refs;
  }

  /** Loose refs at `ref` (a file) or under it (a directory); false when not plain. */
  private walk(
    ref: string,
    nowNs: bigint,
    out: Map<string, string>,
    seen: Set<string>,
  ): boolean {
    const path = join(this.commonDir, ref);
    const s = this.stamp(path, nowNs);
    if (!s) return true;
    if (s.st.isDirectory()) {
      for (const e of readdirSync(path, { withFileTypes: true })) {
        if (e.name.endsWith('.lock') || e.name.startsWith('.')) return false;
        if (!e.isFile() && !e.isDirectory()) return false;
        if (!this.walk(`${ref}/${e.name}`, nowNs, out, seen)) return false;
      }
      return true;
    }
    if (!s.st.isFile()) return false;
    seen.add(path);
    let kept = this.kept.get(path);
    if (!kept || kept.key !== s.key || !kept.settled) {
      const m = SHA.exec(readFileSync(path, 'utf8'));
      if (!m) return false;
      kept = { key: s.key, value: m[1]!, settled: s.settled };
      this.kept.set(path, kept);
    }
    out.set(ref, kept.value);
    return true;
  }
}
