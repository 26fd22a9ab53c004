import { describe, expect, it } from 'vitest';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { ROOT } from '../helpers/cli.js';

// The arrows point one way: cli → supervisor core → contract ← agent-runner (both may use git/); the dashboard
// depends on the core, never the reverse. This checks it on the sources, and finds cycles.
const SOURCES = [
  'contract',
  'git',
  'agent-runner',
  'supervisor',
  'dashboard',
  'index.ts',
];

function files(p: string): string[] {
  const abs = join(ROOT, p);
  if (!statSync(abs).isDirectory()) return [p];
  return readdirSync(abs)
    .flatMap((f) => files(join(p, f)))
    .filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'));
}

/** Relative imports of a file; `typeOnly` for `import type` (erased when compiled). */
function imports(file: string): Array<{ path: string; typeOnly: boolean }> {
  const text = readFileSync(join(ROOT, file), 'utf8');
  const out: Array<{ path: string; typeOnly: boolean }> = [];
  for (const m of text.matchAll(
    /(?:^|\n)\s*(import|export)\s([^;]*?)from\s+'(\.[^']+)'|import\(\s*'(\.[^']+)'\s*\)/g,
  )) {
    const spec = m[3] ?? m[4]!;
    out.push({
      path: relative(ROOT, resolve(dirname(join(ROOT, file)), spec)).replace(
        /\.js$/,
        '.ts',
      ),
      typeOnly: m[1] === 'import' && /^type\s/.test(m[2] ?? ''),
    });
  }
  return out;
}

const area = (f: string) =>
  f.startsWith('supervisor/cli/')
    ? 'cli'
    : f.split('/')[0]!.replace(/\.ts$/, '');

const ALLOWED: Record<string, string[]> = {
  // The contract may run git through the one git runner (which imports nothing of ours).
  contract: ['contract', 'git'],
  // The one git runner: both sides run git through it; it imports nothing of ours.
  git: ['git'],
  'agent-runner': ['agent-runner', 'contract', 'git'],
  supervisor: ['supervisor', 'contract', 'git'],
  dashboard: ['dashboard', 'supervisor', 'contract', 'git'],
  cli: ['cli', 'supervisor', 'dashboard', 'contract', 'git'],
  index: ['supervisor', 'contract'],
};

describe('module structure', () => {
  // Every edge counts for the arrows; only runtime edges can make a cycle (a type-only import
  // is erased by the compiler and never loads the module).
  const graph = new Map<string, string[]>();
  const runtime = new Map<string, string[]>();
  for (const f of SOURCES.flatMap(files)) {
    const deps = imports(f);
    graph.set(
      f,
      deps.map((d) => d.path),
    );
    runtime.set(
      f,
      deps.filter((d) => !d.typeOnly).map((d) => d.path),
    );
  }

  it('keeps the dependency arrows pointing one way', () => {
    // The parser must see the real edges, or this test would pass on nothing.
    expect(graph.get('supervisor/daemon.ts')).toContain('supervisor/feeder.ts');
    expect(graph.get('agent-runner/runner.ts')).toContain('contract/job.ts');
    const violations: string[] = [];
    for (const [f, deps] of graph) {
      for (const d of deps)
        if (!ALLOWED[area(f)]!.includes(area(d)))
          violations.push(`${f} → ${d}`);
    }
    expect(violations).toEqual([]);
  });

  it('has no import cycles', () => {
    const cycles: string[] = [];
    const state = new Map<string, 'visiting' | 'done'>();
    const stack: string[] = [];
    const visit = (f: string) => {
      if (state.get(f) === 'done') return;
      if (state.get(f) === 'visiting') {
        cycles.push([...stack.slice(stack.indexOf(f)), f].join(' → '));
        return;
      }
      state.set(f, 'visiting');
      stack.push(f);
      for (const d of runtime.get(f) ?? []) if (runtime.has(d)) visit(d);
      stack.pop();
      state.set(f, 'done');
    };
    for (const f of runtime.keys()) visit(f);
    expect(cycles).toEqual([]);
  });
});
