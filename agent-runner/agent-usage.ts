import type { AgentUsage } from '../contract/job.js';

const int = (v: unknown): number =>
  typeof v === 'number' && Number.isFinite(v) && v >= 0 ? Math.round(v) : 0;

/**
 * Reads the machine-readable output of the agents, line by line: Claude Code's
 * `--output-format stream-json` (the `result` event: total_cost_usd, usage, num_turns; the model
 * from `system`/`init` or an `assistant` message) and Codex's `exec --json` (`turn.completed`
 * events' usage, summed). Anything else passes unread.
 */
export class AgentUsageScanner {
  private partial = '';
  private usage: AgentUsage | undefined;
  private model: string | undefined;

  feed(chunk: Buffer | string): void {
    const lines = (this.partial + chunk.toString()).split('\n');
    this.partial = (lines.pop() ?? '').slice(-1024 * 1024);
    for (const l of lines) this.line(l);
  }

  private line(raw: string): void {
    const l = raw.trim();
    if (!l.startsWith('{') || !l.includes('"type"')) return;
    let ev: Record<string, unknown>;
    try {
      ev = JSON.parse(l) as Record<string, unknown>;
    } catch {
      return;
    }
    const type = ev.type;
    if (type === 'system' && typeof ev.model === 'string')
      this.model = ev.model;
    else if (type === 'assistant') {
      const m = (ev.message as { model?: unknown } | undefined)?.model;
      if (typeof m === 'string') this.model = m;
    } else if (type === 'result') {
      const u = (ev.usage ?? {}) as Record<string, unknown>;
      this.usage = {
        ...(typeof ev.total_cost_usd === 'number'
          ? { costUsd: ev.total_cost_usd }
          : {}),
        inputTokens: int(u.input_tokens),
        outputTokens: int(u.output_tokens),
        cacheReadTokens: int(u.cache_read_input_tokens),
        cacheWriteTokens: int(u.cache_creation_input_tokens),
        ...(typeof ev.num_turns === 'number'
          ? { turns: int(ev.num_turns) }
          : {}),
      };
    } else if (type === 'turn.completed') {
      const u = (ev.usage ?? {}) as Record<string, unknown>;
      const prev = this.usage;
      this.usage = {
        inputTokens: (prev?.inputTokens ?? 0) + int(u.input_tokens),
        outputTokens: (prev?.outputTokens ?? 0) + int(u.output_tokens),
        cacheReadTokens:
          (prev?.cacheReadTokens ?? 0) + int(u.cached_input_tokens),
        cacheWriteTokens: 0,
        turns: (prev?.turns ?? 0) + 1,
      };
    }
  }

  /** The run's usage once the agent exited (undefined when it printed none). */
  finish(): AgentUsage | undefined {
    if (this.partial) this.line(this.partial);
    this.partial = '';
    if (!this.usage) return undefined;
    return {
      ...this.usage,
      ...(this.model ? { model: this.model.slice(0, 200) } : {}),
    };
  }
}
