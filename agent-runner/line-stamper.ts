/**
 * Writes an agent's output into its attempt's log one line at a time, each line prefixed with
 * the time it arrived (`2026-05-01T10:00:00.000Z `), so `supervisor logs` can show times,
 * filter with `--since` and interleave agents in order. A line still open when the agent
 * exits is flushed by `end`; a runaway line without a newline is cut into 8 KiB pieces.
 */
const MAX_PENDING = 8 * 1024;

export class LineStamper {
  private pending = '';

  constructor(
    private readonly out: NodeJS.WritableStream,
    private readonly now: () => Date = () => new Date(),
  ) {}

  write(chunk: Buffer | string): void {
    const text = this.pending + chunk.toString();
    const lines = text.split('\n');
    this.pending = lines.pop() ?? '';
    while (this.pending.length > MAX_PENDING) {
      lines.push(this.pending.slice(0, MAX_PENDING));
      this.pending = this.pending.slice(MAX_PENDING);
    }
    if (lines.length === 0) return;
    const stamp = this.now().toISOString();
    this.out.write(lines.map((l) => `${stamp} ${l}\n`).join(''));
  }

  /** Flushes a last line that had no newline, then writes `line` (stamped) if given. */
  end(line?: string): void {
    if (this.pending) this.write('\n');
    if (line !== undefined)
      this.out.write(`${this.now().toISOString()} ${line}\n`);
  }
}
