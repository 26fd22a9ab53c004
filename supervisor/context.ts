import { randomBytes } from 'node:crypto';
import { linkSync, rmSync } from 'node:fs';
import { loadConfig, type Config } from './config.js';
import { SupervisorError } from './errors.js';
import { detectPlatform, type Platform } from './platform.js';
import {
  currentBranch,
  initStateDir,
  isInitialised,
  resolveRepo,
  type RepoPaths,
} from './repo.js';
import { getSetting, openDatabase, setSetting, type Db } from './store/db.js';
import { setActor } from './store/history.js';
import { IssueStore } from './store/issues.js';
import { RunStore } from './store/runs.js';
import { SlotStore } from './store/slots.js';
import { queueNameFor } from '../contract/job.js';
import { markNewDatabase } from './earlier-database.js';

/** Everything a command needs about one repository, opened once. */
export interface Context {
  paths: RepoPaths;
  config: Readonly<Config>;
  platform: Platform;
  db: Db;
  issues: IssueStore;
  runs: RunStore;
  slots: SlotStore;
  queueName: string;
  baseBranch: string;
  close(): void;
}

export interface OpenOptions {
  repo?: string;
  env?: NodeJS.ProcessEnv;
  flags?: Record<string, unknown>;
  /** Create `.supervisor/` when missing (commands that write); readers refuse instead. */
  init?: boolean;
  /** Who this process's status changes are recorded as (issue history); default "cli". */
  actor?: string;
  /** Run the integrity check (quick_check) on the database: `init`, `start` and `doctor` do. */
  check?: boolean;
}

export async function initRepo(
  paths: RepoPaths,
): Promise<{ created: boolean; baseBranch: string }> {
  initStateDir(paths);
  let created = false;
  if (!isInitialised(paths)) {
    // Built aside and linked into place: a second command starting at the same moment never
    // sees a half-made (0-byte) database, which would be refused as truncated.
    const tmp = `${paths.dbFile}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
    try {
      const fresh = openDatabase(tmp);
      try {
        await markNewDatabase(fresh, new IssueStore(fresh), paths.root);
        setSetting(fresh, 'base_branch', await currentBranch(paths.root));
      } finally {
        fresh.close();
      }
      try {
        linkSync(tmp, paths.dbFile);
        created = true;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
    } finally {
      for (const f of [tmp, `${tmp}-wal`, `${tmp}-shm`])
        rmSync(f, { force: true });
    }
  }
  const db = openDatabase(paths.dbFile, { check: true });
  try {
    let base = getSetting(db, 'base_branch');
    if (!base) {
      base = await currentBranch(paths.root);
      setSetting(db, 'base_branch', base);
    }
    return { created, baseBranch: base };
  } finally {
    db.close();
  }
}

export async function openContext(opts: OpenOptions = {}): Promise<Context> {
  const paths = await resolveRepo(opts.repo ?? process.cwd());
  const config = loadConfig({
    configFile: paths.configFile,
    env: opts.env ?? process.env,
    flags: opts.flags ?? {},
  });
  if (!isInitialised(paths)) {
    if (!opts.init) {
      throw new SupervisorError(
        'ERR_SUP_NOT_INITIALISED',
        `${paths.root} has no supervisor state yet`,
        { hint: 'run `supervisor init` in the repository first' },
      );
    }
    await initRepo(paths);
  }
  const db = openDatabase(paths.dbFile, { check: opts.check === true });
  setActor(db, opts.actor ?? 'cli');
  const platform = detectPlatform({
    memoryPerAgent: config.memoryPerAgent,
    cpusPerAgent: config.cpusPerAgent,
    maxAgents: config.maxAgents,
    runtime: config.runtime,
  });
  const baseBranch =
    config.baseBranch ??
    getSetting(db, 'base_branch') ??
    (await currentBranch(paths.root));
  return {
    paths,
    config,
    platform,
    db,
    issues: new IssueStore(db),
    runs: new RunStore(db),
    slots: new SlotStore(db),
    queueName: queueNameFor(paths.repoId),
    baseBranch,
    close: () => db.close(),
  };
}
