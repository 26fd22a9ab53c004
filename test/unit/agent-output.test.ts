import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { AgentUsageScanner } from '../../agent-runner/agent-usage.js';
import { EventRenderer } from '../../agent-runner/event-render.js';
import { priceFor } from '../../contract/prices.js';

const FAKE = join(import.meta.dirname, '../fixtures/fake-provider-cli.mjs');

/** What the fake CLI prints, run as `tool` with these arguments. */
function fakeOutput(tool: 'claude' | 'codex', args: string[]): Buffer {
  const dir = mkdtempSync(join(tmpdir(), 'sup-render-'));
  try {
    // The fake tells which tool it plays by the name it was run under.
    symlinkSync(FAKE, join(dir, tool));
    return execFileSync(process.execPath, [join(dir, tool), ...args], {
      cwd: dir,
      env: {
        ...process.env,
        FAKE_STATE_DIR: dir,
        ISSUE_ID: '7',
        ISSUE_TITLE: 'x',
      },
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Feeds `text` in pieces of `size` bytes, as pipes deliver it. */
function render(text: Buffer, size: number): string {
  const r = new EventRenderer();
  const out: Buffer[] = [];
  for (let i = 0; i < text.length; i += size)
    out.push(r.write(text.subarray(i, i + size)));
  out.push(r.end());
  return Buffer.concat(out).toString();
}

describe('agent output: readable log, usage and cost', () => {
  it('renders Claude stream-json events as readable lines, whatever the chunking', () => {
    const raw = Buffer.from(
      [
        'plain text before',
        JSON.stringify({
          type: 'system',
          subtype: 'init',
          model: 'claude-sonnet-4-5',
          cwd: '/w',
        }),
        JSON.stringify({
          type: 'assistant',
          message: {
            content: [
              { type: 'text', text: 'Looking.' },
              {
                type: 'tool_use',
                name: 'Bash',
                input: { command: 'npm test' },
              },
            ],
          },
        }),
        JSON.stringify({
          type: 'user',
          message: {
            content: [{ type: 'tool_result', content: 'ok\nall passed' }],
          },
        }),
        JSON.stringify({
          type: 'result',
          subtype: 'success',
          num_turns: 3,
          total_cost_usd: 0.0421,
          duration_ms: 1200,
          usage: {
            input_tokens: 1200,
            output_tokens: 450,
            cache_read_input_tokens: 4000,
          },
        }),
        '{"not":"an event"}',
        'ünïcode tail',
      ].join('\n') + '\n',
    );
    const want = [
      'plain text before',
      'claude: session started · model claude-sonnet-4-5 · /w',
      'Looking.',
      '→ Bash npm test',
      '← ok all passed',
      'claude: success · 3 turns · $0.0421 · 1.2k in, 4.0k cache read, 0 cache write, 450 out tokens · 1.2s',
      '{"not":"an event"}',
      'ünïcode tail',
      '',
    ].join('\n');
    for (const size of [1, 7, 64, raw.length])
      expect(render(raw, size)).toBe(want);
  });

  it('passes other output byte for byte, a line without newline included', () => {
    const raw = Buffer.concat([
      Buffer.from('progress 10%\r'),
      Buffer.from([0xff, 0xfe, 0x0a]),
      Buffer.from('{"type":"result","subtype":"success"'),
    ]);
    // An unfinished JSON line is held until the end, then passed unchanged (it does not parse).
    expect(render(raw, 5)).toEqual(raw.toString());
    const r = new EventRenderer();
    expect(r.write(Buffer.from('no newline yet'))).toEqual(
      Buffer.from('no newline yet'),
    );
  });

  it('renders Codex exec --json, and reads its tokens at the price table (cached input taken out)', () => {
    const raw = fakeOutput('codex', ['exec', '--json', '-']);
    const text = render(raw, 13);
    expect(text).toContain('codex: thread t-1 started');
    expect(text).toContain('$ bash -lc ls');
    expect(text).toContain('files: add issue-7.txt');
    expect(text).toContain(
      'codex: turn completed · 2.0k in (500 cached), 300 out tokens',
    );
    expect(text).not.toContain('{"type"');
    const scan = new AgentUsageScanner({
      '*': { input: 1.25, output: 10, cacheRead: 0.125, cacheWrite: 0 },
    });
    scan.feed(raw);
    expect(scan.finish()).toEqual({
      inputTokens: 1500,
      outputTokens: 300,
      cacheReadTokens: 500,
      cacheWriteTokens: 0,
      costUsd: (1500 * 1.25 + 300 * 10 + 500 * 0.125) / 1e6,
      costSource: 'prices',
      turns: 1,
    });
  });

  it('reads Claude usage: running spend from messages at the price table, then the reported total', () => {
    const prices = {
      'claude-sonnet-4-5': {
        input: 3,
        output: 15,
        cacheRead: 0.3,
        cacheWrite: 3.75,
      },
    };
    const raw = fakeOutput('claude', [
      '-p',
      '--output-format',
      'stream-json',
      '--verbose',
    ]);
    const lines = raw.toString().split('\n');
    const scan = new AgentUsageScanner(prices);
    const resultAt = lines.findIndex((l) => l.includes('"type":"result"'));
    scan.feed(lines.slice(0, resultAt).join('\n') + '\n');
    // Before the result: the two messages' usage, priced.
    expect(scan.spend()).toBeCloseTo(
      (1200 * 3 + 450 * 15 + 4000 * 0.3 + 300 * 3.75) / 1e6,
      9,
    );
    expect(scan.sessionEnded).toBe(false);
    scan.feed(lines.slice(resultAt).join('\n'));
    expect(scan.spend()).toBe(0.0123);
    // The session is over: a budget does not stop it any more (its work would be lost).
    expect(scan.sessionEnded).toBe(true);
    expect(scan.finish()).toEqual({
      inputTokens: 1200,
      outputTokens: 450,
      cacheReadTokens: 4000,
      cacheWriteTokens: 300,
      costUsd: 0.0123,
      costSource: 'reported',
      turns: 3,
      model: 'claude-sonnet-4-5',
    });
  });

  it('finds a price by model, longest prefix, or *', () => {
    const t = {
      claude: { input: 1, output: 1, cacheRead: 0, cacheWrite: 0 },
      'claude-opus': { input: 2, output: 2, cacheRead: 0, cacheWrite: 0 },
      '*': { input: 9, output: 9, cacheRead: 0, cacheWrite: 0 },
    };
    expect(priceFor(t, 'claude-opus-4-1')?.input).toBe(2);
    expect(priceFor(t, 'claude-haiku')?.input).toBe(1);
    expect(priceFor(t, 'gpt-5')?.input).toBe(9);
    expect(priceFor(t, undefined)?.input).toBe(9);
    expect(priceFor({}, 'x')).toBeUndefined();
  });
});
