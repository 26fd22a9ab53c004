import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { issueBranch } from '../../contract/job.js';
import { openContext } from '../../supervisor/context.js';
import { Lander } from '../../supervisor/land/lander.js';
import { stopSpawnHelper, useSpawnHelper } from '../../git/runner.js';
import { git, makeRepo, sh, type TempRepo } from '../lib/git.js';
import type { BenchOptions, RowResult } from '../lib/row.js';
import { fmtMs, fmtRange, median, nowMs, round } from '../lib/stats.js';

const REPO_FILES = 1000;

/** N branches issue/<k>, each one commit adding its own file on top of main. */
async function branches(dir: string, n: number): Promise<string[]> {
  const shas: string[] = [];
  for (let k = 1; k <= n; k++) {
    await git(dir, ['checkout', '-q', '-b', issueBranch(k), 'main']);
    writeFileSync(join(dir, `landed-${k}.txt`), `issue ${k}\n`);
    await git(dir, ['add', `landed-${k}.txt`]);
    await git(dir, ['commit', '-qm', `issue ${k}`]);
    shas.push(await git(dir, ['rev-parse', 'HEAD']));
  }
  await git(dir, ['checkout', '-q', 'main']);
  return shas;
}

/** Ours: `supervisor land --all` (the Lander) with a trivial check, main checked out and clean. */
async function ours(repo: TempRepo, n: number): Promise<number> {
  const shas = await branches(repo.dir, n);
  const ctx = await openContext({
    repo: repo.dir,
    init: true,
    flags: { land: { check: 'true' }, env: { enabled: false } },
  });
  try {
    ctx.db.transaction(() => {
      shas.forEach((sha, k) => {
        const i = ctx.issues.add({ title: `issue ${k + 1}` });
        ctx.issues.update(i.id, {
          status: 'done',
          branch: issueBranch(i.id),
          commit: sha,
        });
      });
    })();
    // As `supervisor land` and `supervisor start` run it: git from the helper shell
    // (BENCH_NO_GIT_HELPER=1: forked from this process, for a before/after).
    const helperDir = join(ctx.paths.stateDir, 'git-helper');
    if (!process.env.BENCH_NO_GIT_HELPER) useSpawnHelper(helperDir);
    const t0 = nowMs();
    const out = await new Lander(ctx).land('all').finally(stopSpawnHelper);
    const ms = nowMs() - t0;
    if (out.some((r) => r.result !== 'merged'))
      throw new Error('bench land: an issue did not land');
    return ms;
  } finally {
    ctx.close();
  }
}

/** The baseline: a plain shell loop of git rebase + merge --ff-only, plus the same trivial check. */
async function baseline(repo: TempRepo, n: number): Promise<number> {
  await branches(repo.dir, n);
  const t0 = nowMs();
  await sh(
    repo.dir,
    `for k in $(seq 1 ${n}); do git checkout -q issue/$k && git rebase -q main && true && git checkout -q main && git merge -q --ff-only issue/$k || exit 1; done`,
  );
  return nowMs() - t0;
}

/**
 * Landing 50 clean issues (one commit each, all branched from the same main) with a trivial
 * check, against a shell loop of `git rebase` + `git merge --ff-only` in the same run.
 */
export async function landRow(o: BenchOptions): Promise<RowResult> {
  const n = o.quick ? 20 : 50;
  const repeats = o.quick ? 1 : 3;
  const oursMs: number[] = [];
  const baseMs: number[] = [];
  for (let r = 0; r < repeats; r++) {
    for (const side of r % 2 === 0 ? ['ours', 'base'] : ['base', 'ours']) {
      const repo = await makeRepo(REPO_FILES);
      try {
        if (side === 'ours') oursMs.push(await ours(repo, n));
        else baseMs.push(await baseline(repo, n));
      } finally {
        repo.cleanup();
      }
    }
    o.log(
      `land: ours ${fmtMs(oursMs.at(-1)!)}, shell loop ${fmtMs(baseMs.at(-1)!)}`,
    );
  }
  const a = median(oursMs);
  const b = median(baseMs);
  const ratio = a / b;
  return {
    id: 'land',
    title: `landing ${n} clean issues (check: true), per issue, median of ${repeats}`,
    ours: `${fmtMs(a / n)} (${fmtRange(oursMs.map((v) => v / n))})`,
    baseline: `${fmtMs(b / n)} (${fmtRange(baseMs.map((v) => v / n))}; git rebase + merge --ff-only loop)`,
    comparison: `${round(ratio, 2)}×`,
    target: '≤ 1.5×',
    met: ratio <= 1.5,
    data: { issues: n, oursMs, baselineMs: baseMs, ratio: round(ratio, 3) },
  };
}
