/**
 * `npm run bench [-- --quick] [-- --only dispatch,feed]`: every row measured against its
 * baseline in this same process run; prints a table and writes bench/results.json.
 */
import { writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { fileURLToPath } from 'node:url';
import { execFileSync } from 'node:child_process';
import { dispatchRow } from './rows/dispatch.js';
import { feedRow } from './rows/feed.js';
import { footprintRows } from './rows/footprint.js';
import { historyRows } from './rows/history.js';
import { landRow } from './rows/land.js';
import { lostHostRow } from './rows/lost-host.js';
import { recoveryRow } from './rows/recovery.js';
import { scaleRows } from './rows/scaleup.js';
import { throughputRow } from './rows/throughput.js';
import type { BenchOptions, RowResult } from './lib/row.js';
import { renderTable } from './lib/table.js';

const ROWS: Record<
  string,
  (o: BenchOptions) => Promise<RowResult | RowResult[]>
> = {
  dispatch: dispatchRow,
  throughput: throughputRow,
  scale: scaleRows,
  feed: feedRow,
  recovery: recoveryRow,
  'lost-host': lostHostRow,
  footprint: footprintRows,
  history: historyRows,
  land: landRow,
};

const DEFAULT_RESULTS = fileURLToPath(
  new URL('../../bench/results.json', import.meta.url),
);

function parseArgs(argv: string[]): {
  quick: boolean;
  only: string[] | undefined;
  verbose: boolean;
  results: string;
} {
  let quick = false;
  let verbose = false;
  let results = DEFAULT_RESULTS;
  let only: string[] | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--quick') quick = true;
    else if (a === '--verbose' || a === '-v') verbose = true;
    else if (a === '--only')
      only = (argv[++i] ?? '').split(',').filter(Boolean);
    else if (a === '--results') results = argv[++i] ?? results;
    else if (a.startsWith('--only='))
      only = a.slice('--only='.length).split(',').filter(Boolean);
    else {
      process.stderr.write(
        `unknown argument ${a}\nusage: npm run bench -- [--quick] [--only ${Object.keys(ROWS).join(',')}] [--results FILE] [--verbose]\n`,
      );
      process.exit(2);
    }
  }
  for (const r of only ?? []) {
    if (!ROWS[r]) {
      process.stderr.write(
        `unknown row "${r}"; rows: ${Object.keys(ROWS).join(', ')}\n`,
      );
      process.exit(2);
    }
  }
  return { quick, only, verbose, results };
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const started = Date.now();
  const loadBefore = loadavg().map((l) => Math.round(l * 100) / 100);
  const log = (msg: string) =>
    process.stderr.write(
      `[bench +${((Date.now() - started) / 1000).toFixed(1)}s] ${msg}\n`,
    );
  const opts: BenchOptions = { quick: args.quick, log };
  const results: RowResult[] = [];
  const failures: Array<{ row: string; error: string }> = [];
  for (const [name, row] of Object.entries(ROWS)) {
    if (args.only && !args.only.includes(name)) continue;
    try {
      const r = await row(opts);
      results.push(...(Array.isArray(r) ? r : [r]));
    } catch (err) {
      const e = err as Error;
      log(`${name} failed: ${args.verbose ? e.stack : e.message}`);
      failures.push({ row: name, error: e.message });
    }
  }
  const machine = {
    node: process.version,
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model ?? 'unknown',
    memoryGiB: Math.round(totalmem() / 1024 ** 3),
    git: execFileSync('git', ['--version'], { encoding: 'utf8' }).trim(),
    // Other work on the machine during the run (1, 5, 15 min load averages before and after).
    loadBefore,
    loadAfter: loadavg().map((l) => Math.round(l * 100) / 100),
  };
  const table = renderTable(results);
  process.stdout.write(`\n${table}\n`);
  for (const f of failures)
    process.stdout.write(`${f.row}: FAILED (${f.error})\n`);
  process.stdout.write(
    `${machine.cpus} CPUs, node ${machine.node}, ${machine.git}; load average ${machine.loadBefore.join(' ')} before, ${machine.loadAfter.join(' ')} after\n`,
  );
  writeFileSync(
    args.results,
    JSON.stringify(
      {
        at: new Date().toISOString(),
        quick: args.quick,
        durationS: Math.round((Date.now() - started) / 1000),
        machine,
        rows: results,
        failures,
      },
      null,
      2,
    ) + '\n',
  );
  log(`wrote ${args.results}`);
  // The run is over: a stray socket or timer must not keep the process alive.
  process.exit(failures.length ? 1 : 0);
}

main().catch((err: Error) => {
  process.stderr.write(`${err.stack ?? err.message}\n`);
  process.exit(1);
});
