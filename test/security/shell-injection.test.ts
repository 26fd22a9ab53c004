/**
 * No shell interpolation of issue content anywhere. Titles and bodies made of shell metacharacters
 * and `touch CANARY` payloads go in through the CLI and through a plain BullMQ producer; the
 * scripted agent echoes what it got. The canary is never created, each title and body arrives
 * byte-exact, and titles that look like git options (or hold newlines) make ordinary commit
 * messages. A static check keeps every `sh -c` in the code on a constant script.
 * (test/cli covers two hand-written hostile titles and a 2 MB binary body.)
 */
import { afterEach, describe, expect, it } from 'vitest';
import {
  existsSync,
  readdirSync,
  readFileSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import {
  ROOT,
  cliJson,
  runCli,
  startSupervisor,
  testEnv,
  waitFor,
} from '../helpers/cli.js';
import { git, tempDir, tempRepo } from '../helpers/repo.js';
import { repoQueue } from '../helpers/queue.js';
import { seededRandom } from '../helpers/random.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const META = [
  '$',
  '(',
  ')',
  '`',
  ';',
  '|',
  '&',
  '>',
  '<',
  "'",
  '"',
  '\\',
  '*',
  '?',
  '[',
  ']',
  '{',
  '}',
  '~',
  '!',
  '#',
  '\n',
  '\t',
  ' ',
  '=',
  '%',
  '^',
  '-',
  '--',
  'a',
  'Z',
  '9',
  'é',
  '日',
];

function payloads(canary: string): string[] {
  return [
    `$(touch ${canary})`,
    `\`touch ${canary}\``,
    `; touch ${canary}`,
    `| touch ${canary}`,
    `&& touch ${canary}`,
    `|| touch ${canary}`,
    `\ntouch ${canary}\n`,
    `'; touch ${canary}; '`,
    `"; touch ${canary}; "`,
    `"$(touch ${canary})"`,
    `> ${canary}`,
    `$(IFS=_;c=touch_${canary};$c)`,
    `\${IFS}touch\${IFS}${canary}`,
    `-c 'touch ${canary}'`,
    `--upload-pack=touch ${canary}`,
    `-oProxyCommand=touch ${canary}`,
    `$((1+1)) $HOME ~ * !!`,
    `%s%n%x \\x41 $'\\x41'`,
  ];
}

/** The scripted agent reads `key: value` lines of the body as directives; keep fuzz out of them. */
const defuse = (body: string) => body.replace(/^(\s*)([a-z-]+:)/gm, '$1>$2');

function fuzz(
  next: () => number,
  canary: string,
  n: number,
): Array<{ title: string; body: string }> {
  const pick = <T>(xs: T[]) => xs[Math.floor(next() * xs.length)]!;
  const piece = (len: number) =>
    Array.from({ length: len }, () => pick(META)).join('');
  const out: Array<{ title: string; body: string }> = [];
  const all = payloads(canary);
  for (let i = 0; i < n; i++) {
    const p = all[i % all.length]!;
    // A letter first and last: titles are trimmed and must not be empty (the store's rule).
    const title = `T${i} ${piece(3 + Math.floor(next() * 12))}${p}${piece(Math.floor(next() * 8))} x`;
    const body = defuse(
      `${piece(Math.floor(next() * 20))}${pick(all)}\n${piece(Math.floor(next() * 30))}${p}`,
    );
    out.push({ title, body });
  }
  return out;
}

function filesNamed(dir: string, name: string, found: string[] = []): string[] {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.name === name) found.push(p);
    if (e.isDirectory() && !e.isSymbolicLink() && e.name !== '.git')
      filesNamed(p, name, found);
  }
  return found;
}

describe('shell metacharacters in issue content', () => {
  it('never run: 50 fuzzed titles and bodies via the CLI and a plain BullMQ producer arrive byte-exact, no canary', async () => {
    const seed = Number(
      process.env.SECURITY_FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31),
    );
    console.log(`shell fuzz seed ${seed} (replay: SECURITY_FUZZ_SEED=${seed})`);
    const repo = tempRepo();
    cleanups.push(repo.cleanup);
    const dir = repo.dir;
    // Environments off: this test needs no ports or Redis DBs of its own.
    writeFileSync(
      join(dir, 'supervisor.config.json'),
      JSON.stringify({ env: { enabled: false } }),
    );
    git(dir, 'add', 'supervisor.config.json');
    git(dir, 'commit', '-qm', 'config');
    const out = tempDir('sup-sec-');
    const canaryName = `CANARY_${seed}`;
    const canary = join(out, canaryName);
    const echo = join(out, 'echo');
    const env = testEnv({ AGENT_ECHO_FILE: echo });
    const cases = fuzz(seededRandom(seed), canary, 50);
    const viaCli = cases.slice(0, 25);
    const viaQueue = cases.slice(25);
    // Titles that read like git options or hold newlines: the commit message must stay a message.
    const gitish = [
      '-n',
      '--amend',
      '-m evil',
      '--author=Evil <evil@example.com>',
      `--fixup=HEAD`,
      `first line\n--amend --no-edit\n-m x`,
      '-\n-',
    ];

    const added: Array<{ id: number; title: string; body: string }> = [];
    let next = 0;
    const todo = [...viaCli, ...gitish.map((title) => ({ title, body: '' }))];
    await Promise.all(
      Array.from({ length: 6 }, async () => {
        while (next < todo.length) {
          const c = todo[next++]!;
          // `--body=` and `--`: values that start with "-" stay values.
          const r = await runCli(
            ['issue', 'add', '--json', `--body=${c.body}`, '--', c.title],
            { cwd: dir, env },
          );
          expect(r.code, r.stderr).toBe(0);
          added.push({ id: JSON.parse(r.stdout).id, ...c });
        }
      }),
    );
    // A small body with a NUL byte: by file, byte-exact (ISSUE_BODY cannot hold it; it used to fail the issue).
    const nulBody = Buffer.from(
      `before\u0000after $(touch ${canary})\n`,
      'utf8',
    );
    const nulFile = join(out, 'nul-body');
    writeFileSync(nulFile, nulBody);
    const nul = await runCli(
      ['issue', 'add', '--json', '--body-file', nulFile, 'NUL in the body'],
      { cwd: dir, env },
    );
    expect(nul.code, nul.stderr).toBe(0);
    const nulId = JSON.parse(nul.stdout).id as number;
    const sup = await startSupervisor(dir, env, [
      '--agents',
      '3',
      '--no-dashboard',
    ]);
    cleanups.push(async () => void (await sup.stop()));
    const queue = await repoQueue(
      dir,
      env.SUPERVISOR_PREFIX!,
      (fn) => cleanups.push(fn),
      { obliterate: true },
    );
    await queue.addBulk(
      viaQueue.map((c, i) => ({
        name: 'issue',
        data: { title: c.title, body: c.body },
        opts: { jobId: `fz-${i}` },
      })),
    );
    const total = todo.length + viaQueue.length + 1;
    const list = await waitFor(
      async () => {
        const l = await cliJson<any[]>(['issue', 'list'], { cwd: dir, env });
        return l.length === total &&
          l.every((i) => i.status === 'done' || i.status === 'failed')
          ? l
          : false;
      },
      { timeoutMs: 240_000, what: `${total} fuzzed issues finished` },
    );
    expect(list.filter((i) => i.status !== 'done')).toEqual([]);

    const check = (key: string, c: { title: string; body: string }) => {
      expect(readFileSync(`${echo}.${key}.title`, 'utf8'), key).toBe(
        c.title.trim(),
      );
      expect(readFileSync(`${echo}.${key}.body`, 'utf8'), key).toBe(c.body);
      expect(readFileSync(`${echo}.${key}.envbody`, 'utf8'), key).toBe(c.body);
    };
    for (const c of added) check(String(c.id), c);
    expect(readFileSync(`${echo}.${nulId}.body`).equals(nulBody)).toBe(true);
    expect(readFileSync(`${echo}.${nulId}.envbody`, 'utf8')).toBe('');
    expect(
      JSON.parse(readFileSync(`${echo}.${nulId}.env`, 'utf8'))
        .ISSUE_BODY_TRUNCATED,
    ).toBe('1');
    // Foreign jobs run as the issue they were adopted as (ISSUE_ID), never as their job id:
    // each is found by what its agent echoed.
    const known = new Set([...added.map((a) => a.id), nulId]);
    const adopted = list.filter((i) => !known.has(i.id)).map((i) => i.id);
    expect(adopted).toHaveLength(viaQueue.length);
    const echoed = (id: number, part: string) => {
      const f = `${echo}.${id}.${part}`;
      return existsSync(f) ? readFileSync(f, 'utf8') : undefined;
    };
    viaQueue.forEach((c, i) => {
      const id = adopted.find(
        (a) =>
          echoed(a, 'title') === c.title.trim() && echoed(a, 'body') === c.body,
      );
      expect(id, `fz-${i} ran as an adopted issue`).toBeDefined();
      check(String(id), c);
    });
    expect(existsSync(`${echo}.fz-0.title`)).toBe(false);

    const base = git(dir, 'rev-parse', 'main');
    for (const c of added.filter((a) => gitish.includes(a.title))) {
      const issue = list.find((i) => i.id === c.id)!;
      expect(git(dir, 'log', '-1', '--format=%B', issue.commit)).toBe(
        `issue #${c.id}: ${c.title.trim().split('\n')[0]}`,
      );
      expect(git(dir, 'log', '-1', '--format=%an <%ae>', issue.commit)).toMatch(
        /^agent-00\d <agent-00\d@agent-supervisor\.local>$/,
      );
      expect(git(dir, 'rev-parse', `${issue.commit}^`)).toBe(base);
    }
    // The canary, anywhere: next to the echo files, in the repository or its worktrees.
    expect(existsSync(canary)).toBe(false);
    expect(filesNamed(out, canaryName)).toEqual([]);
    expect(filesNamed(dir, canaryName)).toEqual([]);
  });

  it('keeps every `sh -c` in the code on a constant script (issue content only by environment and files)', () => {
    const files: string[] = [];
    const walk = (d: string) => {
      for (const e of readdirSync(d)) {
        const p = join(d, e);
        if (statSync(p).isDirectory()) walk(p);
        else if (p.endsWith('.ts')) files.push(p);
      }
    };
    for (const d of ['supervisor', 'agent-runner', 'contract', 'dashboard'])
      walk(join(ROOT, d));
    const shells: string[] = [];
    const all = files.map((f) => readFileSync(f, 'utf8')).join('\n');
    /**
     * A constant script: a string literal, or an array joined whose elements are string
     * literals, or other such constants (by name, or spread), declared somewhere in the code.
     */
    const isConstantScript = (
      name: string,
      seen = new Set<string>(),
    ): boolean => {
      if (seen.has(name)) return false;
      seen.add(name);
      const decl = new RegExp(
        `const ${name}\\s*=\\s*(\\[((?:\\s|//[^\\n]*|'[^'\\n]*',?|(?:\\.\\.\\.)?[A-Z_][A-Z0-9_]*,?)*)\\](?:\\.join\\([^)]*\\))?|'[^'\\n]*')`,
      ).exec(all);
      if (!decl) return false;
      const refs = (decl[2] ?? '')
        .replace(/'[^'\n]*'/g, '')
        .replace(/\/\/[^\n]*/g, '')
        .match(/[A-Z_][A-Z0-9_]*/g);
      return (refs ?? []).every((r) => isConstantScript(r, seen));
    };
    for (const f of files) {
      const src = readFileSync(f, 'utf8');
      const rel = f.slice(ROOT.length).replace(/^\//, '');
      expect(src, rel).not.toMatch(/shell:\s*true/);
      for (const m of src.matchAll(
        /import\s*\{([^}]*)\}\s*from\s*'node:child_process'/g,
      )) {
        const names = m[1]!
          .split(',')
          .map((s) => s.trim().replace(/^type\s+/, ''))
          .filter(Boolean);
        expect(
          names.filter(
            (n) =>
              ![
                'spawn',
                'spawnSync',
                'execFile',
                'execFileSync',
                'ChildProcess',
              ].includes(n),
          ),
          `${rel} imports exec/execSync`,
        ).toEqual([]);
      }
      // ['sh', '-c', X] and spawn('/bin/sh', ['-c', X]): X must be a named constant, not built from data.
      for (const m of src.matchAll(
        /'(?:\/bin\/)?sh'\s*,\s*\[?\s*'-c'\s*,\s*([^,\]\n]+)/g,
      )) {
        shells.push(`${rel}: ${m[1]!.trim()}`);
        expect(m[1]!.trim(), rel).toMatch(/^[A-Za-z_][A-Za-z0-9_]*$/);
        expect(
          isConstantScript(m[1]!.trim()),
          `${rel}: ${m[1]} is a string constant`,
        ).toBe(true);
      }
    }
    expect(
      shells.some((s) =>
        s.startsWith('agent-runner/agent-process.ts: GUARDED_WRAPPER'),
      ),
    ).toBe(true);
  });
});
