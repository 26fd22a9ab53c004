/**
 * `npm run demo`: a throw-away repository, a handful of issues, three agents with a scripted
 * demo agent, landing as each issue is done (two issues edit the same line: one of them conflicts,
 * goes back to an agent and lands on its second try), and a results table at the end with what
 * main holds. Uses the programmatic API.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import {
  openSupervisor,
  type IssueSummary,
  type Supervisor,
} from '../index.js';

const DEMO_AGENT = fileURLToPath(
  new URL('../../scripts/demo-agent.mjs', import.meta.url),
);

function git(cwd: string, ...args: string[]): string {
  return execFileSync('git', args, {
    cwd,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'ignore'],
    env: {
      ...process.env,
      GIT_AUTHOR_NAME: 'demo',
      GIT_AUTHOR_EMAIL: 'demo@example.com',
      GIT_COMMITTER_NAME: 'demo',
      GIT_COMMITTER_EMAIL: 'demo@example.com',
    },
  }).trim();
}

const ISSUES: Array<{
  title: string;
  priority: 'urgent' | 'high' | 'medium' | 'low';
  body: string;
}> = [
  {
    title: 'Login redirect loops on expired sessions',
    priority: 'urgent',
    body: 'Users with an expired cookie bounce between /login and /.',
  },
  {
    title: 'Add a health endpoint',
    priority: 'high',
    body: 'GET /healthz returns 200 with the build sha.\nroute: /healthz',
  },
  {
    title: 'Document the config file',
    priority: 'medium',
    body: 'Every option with its default.',
  },
  {
    title: 'Cache user avatars',
    priority: 'medium',
    body: 'Avoid refetching on every page load.',
  },
  {
    title: 'Fix typo in the footer',
    priority: 'low',
    body: '"Copyrigth" → "Copyright".',
  },
  {
    title: 'Rate-limit the signup form',
    priority: 'high',
    body: 'At most 5 attempts per minute per IP.\nroute: /signup',
  },
];

/** Statuses an issue rests in once the merge queue is through with it. */
const SETTLED = new Set(['merged', 'failed', 'conflict', 'check-failed']);

/** Prints each issue's moves (done, landing, merged, sent back) until every one has settled. */
async function landed(sup: Supervisor): Promise<void> {
  const last = new Map<number, string>();
  for (;;) {
    const issues = sup.listIssues();
    for (const i of issues) {
      if (last.get(i.id) === i.status) continue;
      const was = last.get(i.id);
      last.set(i.id, i.status);
      if (i.status === 'done')
        console.log(`  #${i.id} done by ${i.agent} → ${i.branch}`);
      else if (i.status === 'merged')
        console.log(
          `  #${i.id} merged into main as ${i.landedSha?.slice(0, 8) ?? '(no change)'}`,
        );
      else if (i.status === 'open' && was && was !== 'open')
        console.log(
          `  #${i.id} conflicts with main in ${i.conflictFiles.join(', ')}: back to an agent`,
        );
      else if (SETTLED.has(i.status)) console.log(`  #${i.id} ${i.status}`);
    }
    if (issues.every((i) => SETTLED.has(i.status))) return;
    await new Promise((r) => setTimeout(r, 100));
  }
}

function pad(s: string, n: number): string {
  return s.length > n ? `${s.slice(0, n - 1)}…` : s.padEnd(n);
}

async function main(): Promise<void> {
  const repo = mkdtempSync(join(tmpdir(), 'supervisor-demo-'));
  git(repo, 'init', '-q', '-b', 'main');
  writeFileSync(join(repo, 'README.md'), '# demo app\n');
  writeFileSync(
    join(repo, 'app.js'),
    "const routes = ['/'];\nconsole.log(`serving ${routes.join(' ')}`);\n",
  );
  git(repo, 'add', '-A');
  git(repo, 'commit', '-qm', 'initial commit');
  console.log(`demo repository: ${repo}`);

  const prefix = `demo-${randomBytes(3).toString('hex')}`;
  const sup = await openSupervisor({
    repo,
    config: {
      agentCommand: `node ${DEMO_AGENT}`,
      maxAgents: 3,
      prefix,
      dashboard: { enabled: false },
      backoff: 500,
      // The merge queue: each issue lands as soon as it is done, if the check passes on exactly
      // the tree that lands; a conflict goes back to an agent, which redoes it on the new main.
      land: { auto: true, check: 'node app.js', onConflict: 'requeue' },
    },
  });
  for (const i of ISSUES) {
    const added = sup.addIssue(i);
    console.log(`  added #${added.id} [${added.priority}] ${added.title}`);
  }
  const started = Date.now();
  console.log('starting 3 agents…');
  await sup.start({ agents: 3 });
  await landed(sup);
  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  await sup.stop();

  const rows = sup.listIssues().map((i: IssueSummary) => {
    const runs = sup.getIssue(i.id).runs;
    const run = [...runs].reverse().find((r) => r.outcome === 'succeeded');
    return [
      `#${i.id}`,
      i.priority,
      i.status,
      i.agent ?? '',
      String(run?.filesChanged ?? ''),
      run?.durationMs ? `${(run.durationMs / 1000).toFixed(1)}s` : '',
      String(runs.filter((r) => r.outcome === 'succeeded').length),
      i.landedSha?.slice(0, 8) ?? '—',
    ];
  });
  const header = [
    'ISSUE',
    'PRIORITY',
    'STATUS',
    'AGENT',
    'FILES',
    'TIME',
    'TRIES',
    'MERGED',
  ];
  const widths = [6, 9, 7, 10, 6, 6, 6, 9];
  console.log(`\nresults (${ISSUES.length} issues, 3 agents, ${seconds}s):\n`);
  console.log(header.map((h, k) => pad(h, widths[k]!)).join(' '));
  for (const r of rows)
    console.log(r.map((c, k) => pad(c, widths[k]!)).join(' '));
  const merged = rows.filter((r) => r[2] === 'merged').length;
  const retried = rows.filter((r) => Number(r[6]) > 1).map((r) => r[0]);
  console.log(
    `\n${merged}/${ISSUES.length} merged into main${retried.length ? ` (${retried.join(', ')} conflicted, went back to an agent and landed on its next try)` : ''}.`,
  );
  console.log(
    `main: ${git(repo, 'rev-parse', '--short', 'main')} · ${git(repo, 'rev-list', '--count', 'main')} commits · app.js: ${git(repo, 'show', 'main:app.js').split('\n')[0]}`,
  );
  console.log(`Inspect: cd ${repo} && git log --oneline --graph main`);

  // Leave the shared Redis as we found it.
  const redis = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379', {
    maxRetriesPerRequest: null,
  });
  const q = new Queue(sup.queueName, { connection: redis, prefix });
  await q.obliterate({ force: true });
  for (const k of await redis.keys(`${prefix}:*`)) await redis.del(k);
  await q.close();
  redis.disconnect();
  await sup.close();
  process.exit(merged === ISSUES.length ? 0 : 1);
}

main().catch((err: Error) => {
  console.error(`demo failed: ${err.message}`);
  process.exit(1);
});
