/**
 * Turns the agents' machine-readable output into lines a person reads: Claude Code's
 * `--output-format stream-json` and Codex's `exec --json` print one JSON event per line, which
 * the runner parses for usage and limits (agent-usage.ts, usage-limits.ts) from the raw output,
 * while the attempt log and `supervisor logs` get this rendering. Anything that is not a known
 * event passes through byte for byte (other agents, plain text, JSON of other shapes).
 */
import { compactCount } from '../contract/usage-text.js';

/** A line longer than this is not held back waiting for its end: it passes as it is. */
const MAX_HELD = 1024 * 1024;
/** Tool inputs and outputs are shown on one line, cut to this many characters. */
const SHORT = 200;
const NL = 0x0a;

type Ev = Record<string, unknown>;

const str = (v: unknown): string | undefined =>
  typeof v === 'string' ? v : undefined;
const num = (v: unknown): number | undefined =>
  typeof v === 'number' && Number.isFinite(v) ? v : undefined;
const obj = (v: unknown): Ev =>
  v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Ev) : {};

/** One line of at most `SHORT` characters. */
function short(text: string): string {
  const one = text.replace(/\s+/g, ' ').trim();
  return one.length > SHORT ? `${one.slice(0, SHORT - 1)}…` : one;
}

/** What a tool call is about, in a few words: the command, the file, the pattern. */
function toolSummary(input: Ev): string {
  for (const k of [
    'command',
    'file_path',
    'path',
    'pattern',
    'url',
    'query',
    'description',
  ]) {
    const v = str(input[k]);
    if (v) return short(v);
  }
  const json = JSON.stringify(input);
  return json === '{}' ? '' : short(json);
}

function contentText(c: unknown): string {
  if (typeof c === 'string') return c;
  if (Array.isArray(c))
    return c
      .map((b) => str(obj(b).text) ?? '')
      .filter(Boolean)
      .join(' ');
  return '';
}

function claudeUsage(u: Ev): string {
  const input = num(u.input_tokens) ?? 0;
  const cached = num(u.cache_read_input_tokens) ?? 0;
  const written = num(u.cache_creation_input_tokens) ?? 0;
  const out = num(u.output_tokens) ?? 0;
  return `${compactCount(input)} in, ${compactCount(cached)} cache read, ${compactCount(written)} cache write, ${compactCount(out)} out tokens`;
}

/** Claude Code stream-json; undefined for a type it does not print. */
function renderClaude(ev: Ev): string[] | undefined {
  switch (ev.type) {
    case 'system':
      if (ev.subtype === 'init')
        return [
          `claude: session started · model ${str(ev.model) ?? '?'}${str(ev.cwd) ? ` · ${str(ev.cwd)}` : ''}`,
        ];
      return [`claude: ${str(ev.subtype) ?? 'system event'}`];
    case 'assistant': {
      const content = obj(ev.message).content;
      if (!Array.isArray(content)) return [];
      const lines: string[] = [];
      for (const raw of content) {
        const b = obj(raw);
        if (b.type === 'text' && str(b.text)) lines.push(str(b.text)!);
        else if (b.type === 'tool_use')
          lines.push(
            `→ ${str(b.name) ?? 'tool'} ${toolSummary(obj(b.input))}`.trimEnd(),
          );
        else if (b.type === 'thinking' && str(b.thinking))
          lines.push(`(thinking) ${short(str(b.thinking)!)}`);
      }
      return lines;
    }
    case 'user': {
      const content = obj(ev.message).content;
      if (!Array.isArray(content)) return [];
      return content
        .map(obj)
        .filter((b) => b.type === 'tool_result')
        .map(
          (b) =>
            `← ${b.is_error === true ? 'error: ' : ''}${short(contentText(b.content)) || '(no output)'}`,
        );
    }
    case 'result': {
      const parts = [
        `claude: ${str(ev.subtype) ?? 'result'}${ev.is_error === true ? ' (error)' : ''}`,
      ];
      const turns = num(ev.num_turns);
      if (turns !== undefined) parts.push(`${turns} turns`);
      const cost = num(ev.total_cost_usd);
      if (cost !== undefined) parts.push(`$${cost.toFixed(4)}`);
      if (ev.usage) parts.push(claudeUsage(obj(ev.usage)));
      const ms = num(ev.duration_ms);
      if (ms !== undefined) parts.push(`${(ms / 1000).toFixed(1)}s`);
      const lines = [parts.join(' · ')];
      if (ev.is_error === true && str(ev.result))
        lines.push(`claude: ${short(str(ev.result)!)}`);
      return lines;
    }
    case 'rate_limit_event': {
      const info = obj(ev.rate_limit_info);
      const reset = num(info.resetsAt);
      return [
        `claude: rate limit ${str(info.status) ?? '?'}${reset !== undefined ? ` · resets ${new Date(reset * 1000).toISOString()}` : ''}`,
      ];
    }
    case 'stream_event':
      // Partial message deltas (--include-partial-messages): the whole message follows.
      return [];
    default:
      return undefined;
  }
}

function renderCodexItem(item: Ev, started: boolean): string[] {
  switch (item.type) {
    case 'command_execution':
      if (started) return [`$ ${short(str(item.command) ?? '')}`];
      return [
        `  exit ${num(item.exit_code) ?? '?'}${str(item.aggregated_output) ? ` · ${short(str(item.aggregated_output)!)}` : ''}`,
      ];
    case 'agent_message':
      return started || !str(item.text) ? [] : [str(item.text)!];
    case 'reasoning':
      return started || !str(item.text)
        ? []
        : [`(reasoning) ${short(str(item.text)!)}`];
    case 'file_change': {
      if (started || !Array.isArray(item.changes)) return [];
      const files = item.changes
        .map(obj)
        .map((c) => `${str(c.kind) ?? 'change'} ${str(c.path) ?? '?'}`);
      return [`files: ${files.join(', ')}`];
    }
    case 'mcp_tool_call':
      return started
        ? []
        : [
            `→ ${str(item.server) ?? '?'}.${str(item.tool) ?? '?'} (${str(item.status) ?? 'done'})`,
          ];
    case 'web_search':
      return started ? [] : [`web search: ${short(str(item.query) ?? '')}`];
    case 'todo_list':
      return started || !Array.isArray(item.items)
        ? []
        : item.items
            .map(obj)
            .map(
              (t) =>
                `[${t.completed === true ? 'x' : ' '}] ${short(str(t.text) ?? '')}`,
            );
    case 'error':
      return [`codex: error: ${short(str(item.message) ?? '')}`];
    default:
      return [];
  }
}

/** Codex exec --json; undefined for a type it does not print. */
function renderCodex(ev: Ev): string[] | undefined {
  switch (ev.type) {
    case 'thread.started':
      return [`codex: thread ${str(ev.thread_id) ?? '?'} started`];
    case 'turn.started':
      return [];
    case 'turn.completed': {
      const u = obj(ev.usage);
      return [
        `codex: turn completed · ${compactCount(num(u.input_tokens) ?? 0)} in (${compactCount(num(u.cached_input_tokens) ?? 0)} cached), ${compactCount(num(u.output_tokens) ?? 0)} out tokens`,
      ];
    }
    case 'turn.failed':
      return [`codex: turn failed: ${short(str(obj(ev.error).message) ?? '')}`];
    case 'error':
      return [`codex: error: ${short(str(ev.message) ?? '')}`];
    case 'item.started':
      return renderCodexItem(obj(ev.item), true);
    case 'item.completed':
      return renderCodexItem(obj(ev.item), false);
    case 'item.updated':
      return [];
    default:
      return undefined;
  }
}

/** The readable form of one output line, or undefined when it is not an agent event. */
export function renderEventLine(line: string): string[] | undefined {
  const t = line.trim();
  if (!t.startsWith('{') || !t.endsWith('}')) return undefined;
  let ev: unknown;
  try {
    ev = JSON.parse(t);
  } catch {
    return undefined;
  }
  const o = obj(ev);
  if (typeof o.type !== 'string') return undefined;
  return renderClaude(o) ?? renderCodex(o);
}

/**
 * Streams output through `renderEventLine`: a line that may be a JSON event is held until its
 * newline; everything else passes at once, as the same bytes.
 */
export class EventRenderer {
  private held: Buffer[] = [];
  private heldBytes = 0;
  /** Inside a line that was passed through before its end: the rest of it passes too. */
  private passing = false;

  write(chunk: Buffer): Buffer {
    const out: Buffer[] = [];
    let start = 0;
    while (start < chunk.length) {
      const nl = chunk.indexOf(NL, start);
      const end = nl < 0 ? chunk.length : nl + 1;
      const piece = chunk.subarray(start, end);
      start = end;
      if (this.passing) {
        out.push(piece);
        if (nl >= 0) this.passing = false;
        continue;
      }
      if (this.heldBytes === 0 && !startsLikeJson(piece)) {
        out.push(piece);
        this.passing = nl < 0;
        continue;
      }
      this.held.push(piece);
      this.heldBytes += piece.length;
      if (nl >= 0) out.push(this.flushLine());
      else if (this.heldBytes > MAX_HELD) {
        out.push(this.releaseHeld());
        this.passing = true;
      }
    }
    return Buffer.concat(out);
  }

  /** What is still held (a last line without a newline), rendered when it is an event. */
  end(): Buffer {
    if (this.heldBytes === 0) return Buffer.alloc(0);
    return this.flushLine();
  }

  private releaseHeld(): Buffer {
    const b = Buffer.concat(this.held);
    this.held = [];
    this.heldBytes = 0;
    return b;
  }

  private flushLine(): Buffer {
    const raw = this.releaseHeld();
    const lines = renderEventLine(raw.toString('utf8'));
    if (lines === undefined) return raw;
    return Buffer.from(lines.map((l) => `${l}\n`).join(''), 'utf8');
  }
}

/** A line (or its first piece) whose first non-blank byte is `{`. */
function startsLikeJson(piece: Buffer): boolean {
  for (const b of piece) {
    if (b === 0x20 || b === 0x09 || b === 0x0d) continue;
    return b === 0x7b;
  }
  return false;
}
