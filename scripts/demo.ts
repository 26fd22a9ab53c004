/**
 * `npm run demo`: a throw-away repository, a handful of issues, three agents with a scripted
 * demo agent, and a results table at the end. Uses the programmatic API.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { openSupervisor, type IssueSummary } from '../index.js';

const DEMO_AGENT = fileURLToPath(
  new URL('../../scripts/demo-agent.mjs', import.meta.url),
);

function git(cwd: string, ...args: string[]): void {
  execFileSync('git', args, {
    cwd,
    stdio: 'ignore',
    env: {
      ...process.env,
      GIT_AUTHOR_NAME: 'demo',
      GIT_AUTHOR_EMAIL: 'demo@example.com',
      GIT_COMMITTER_NAME: 'demo',
      GIT_COMMITTER_EMAIL: 'demo@example.com',
    },
  });
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
    body: 'GET /healthz returns 200 with the build sha.',
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
    body: 'At most 5 attempts per minute per IP.',
  },
];

function pad(s: string, n: number): string {
  return s.length > n ? `${s.slice(0, n - 1)}…` : s.padEnd(n);
}

async function main(): Promise<void> {
  const repo = mkdtempSync(join(tmpdir(), 'supervisor-demo-'));
  git(repo, 'init', '-q', '-b', 'main');
  writeFileSync(join(repo, 'README.md'), '# demo app\n');
  writeFileSync(join(repo, 'app.js'), 'console.log("hello");\n');
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
    },
  });
  for (const i of ISSUES) {
    const added = sup.addIssue(i);
    console.log(`  added #${added.id} [${added.priority}] ${added.title}`);
  }
  const started = Date.now();
  const finished = new Promise<void>((resolve) => {
    let n = 0;
    sup.onResult(
      ({ issue }) => {
        n += 1;
        console.log(
          `  #${issue.id} ${issue.status} by ${issue.agent}${issue.commit ? ` → ${issue.branch} @ ${issue.commit.slice(0, 8)}` : ''}`,
        );
        if (n === ISSUES.length) resolve();
      },
      { pollMs: 100 },
    );
  });
  console.log('starting 3 agents…');
  await sup.start({ agents: 3 });
  await finished;
  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  await sup.stop();

  const rows = sup.listIssues().map((i: IssueSummary) => {
    const run = sup.getIssue(i.id).runs.find((r) => r.outcome === 'succeeded');
    return [
      `#${i.id}`,
      i.priority,
      i.status,
      i.agent ?? '',
      i.branch ?? '',
      i.commit?.slice(0, 8) ?? '',
      String(run?.filesChanged ?? ''),
      run?.durationMs ? `${(run.durationMs / 1000).toFixed(1)}s` : '',
    ];
  });
  const header = [
    'ISSUE',
    'PRIORITY',
    'STATUS',
    'AGENT',
    'BRANCH',
    'COMMIT',
    'FILES',
    'TIME',
  ];
  const widths = [6, 9, 7, 10, 9, 9, 6, 6];
  console.log(`\nresults (${ISSUES.length} issues, 3 agents, ${seconds}s):\n`);
  console.log(header.map((h, k) => pad(h, widths[k]!)).join(' '));
  for (const r of rows)
    console.log(r.map((c, k) => pad(c, widths[k]!)).join(' '));
  const done = rows.filter((r) => r[2] === 'done').length;
  console.log(
    `\n${done}/${ISSUES.length} done. Inspect: cd ${repo} && git log --oneline --all --graph`,
  );

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
  process.exit(done === ISSUES.length ? 0 : 1);
}

main().catch((err: Error) => {
  console.error(`demo failed: ${err.message}`);
  process.exit(1);
});
