import { join } from 'node:path';
import { withoutControlPlane } from '../git/control-plane-env.js';
import { replaceSlotFile } from '../contract/slot-files.js';
import type { JobData, RunnerConfig } from '../contract/job.js';

/** Longer values do not fit an environment variable (Linux caps one at 128 KiB). */
const MAX_ENV_VALUE = 64 * 1024;

export interface IssueFiles {
  prompt: string;
  body: string;
  /** $AGENT_STATUS_FILE: where an agent may say when to retry (the generic usage-limit contract). */
  status: string;
}

/** Writes the issue body (byte-exact) and the prompt (title + body + instructions) for the agent. */
export function writeIssueFiles(
  cfg: RunnerConfig,
  data: JobData,
  issueId: string,
): IssueFiles {
  const body =
    data.bodyEncoding === 'base64'
      ? Buffer.from(data.body, 'base64')
      : Buffer.from(data.body, 'utf8');
  const bodyFile = join(cfg.runDir, 'issue-body');
  const promptFile = join(cfg.runDir, 'prompt.md');
  replaceSlotFile(bodyFile, body, cfg.agentUser);
  const head = Buffer.from(`# Issue #${issueId}: ${data.title}\n\n`, 'utf8');
  const tail = Buffer.from(
    `\n\n---\nYou are ${cfg.agentId}, working in a git worktree on branch ${cfg.branch}.\n` +
      'Resolve the issue above by editing files in this directory. Keep the change focused; ' +
      "run the project's tests if it has them. Your changes are committed for you when you exit with status 0.\n",
    'utf8',
  );
  replaceSlotFile(
    promptFile,
    Buffer.concat([head, body, landingSection(data), tail]),
    cfg.agentUser,
  );
  return {
    prompt: promptFile,
    body: bodyFile,
    status: join(cfg.runDir, 'agent-status.json'),
  };
}

/**
 * What an agent whose earlier result could not land is told: what happened and what to do.
 * (The file names and the check's output come from git and the user's check, not from the agent.)
 */
function landingSection(data: JobData): Buffer {
  const l = data.landing;
  if (!l) return Buffer.alloc(0);
  const what =
    l.reason === 'conflict'
      ? `Your earlier result (commit ${l.previousResultSha}) could not land: it conflicts with ` +
        `the current ${l.baseBranch} in these files:\n\n${l.conflictFiles.map((f) => `- ${f}`).join('\n')}\n\n` +
        `This worktree starts from the current ${l.baseBranch}. Redo the change on top of it, ` +
        `keeping what others changed in those files (see \`git show ${l.previousResultSha}\` for your earlier change).`
      : `Your earlier result (commit ${l.previousResultSha}) could not land: the landing check ` +
        `failed on it. The end of its output:\n\n\`\`\`\n${l.checkLog}\n\`\`\`\n\n` +
        `This worktree starts from the current ${l.baseBranch}. Redo the change so that the check passes ` +
        `(see \`git show ${l.previousResultSha}\` for your earlier change).`;
  return Buffer.from(
    `\n\n## Landing attempt ${l.landAttempt} was sent back\n\n${what}\n`,
    'utf8',
  );
}

/**
 * The agent's environment: the runner's own minus the supervisor's settings, plus the slot's
 * environment and the issue. Issue content travels here and in files, never in a command string.
 */
export function agentEnvironment(
  cfg: RunnerConfig,
  data: JobData,
  issueId: string,
  baseSha: string,
  files: IssueFiles,
  marker: string,
): Record<string, string> {
  // The supervisor's own settings, credentials included (REDIS_URL of the queue, POSTGRES_URL of the
  // admin role), are not the agent's: it gets its slot's REDIS_URL / POSTGRES_URL from agentEnv.
  const env = withoutControlPlane();
  const bodyText =
    data.bodyEncoding === 'base64'
      ? Buffer.from(data.body, 'base64').toString('utf8')
      : data.body;
  // An environment variable cannot hold a NUL byte (spawn refuses it): such bodies come by file only.
  const bodyFits =
    Buffer.byteLength(bodyText) <= MAX_ENV_VALUE && !bodyText.includes('\0');
  Object.assign(env, cfg.agentEnv, {
    ISSUE_ID: issueId,
    ISSUE_TITLE: data.title,
    ISSUE_BODY: bodyFits ? bodyText : '',
    ISSUE_BODY_TRUNCATED: bodyFits ? '0' : '1',
    ISSUE_BODY_FILE: files.body,
    ISSUE_PROMPT_FILE: files.prompt,
    ISSUE_PRIORITY: data.priority,
    AGENT_STATUS_FILE: files.status,
    AGENT_ID: cfg.agentId,
    AGENT_BRANCH: cfg.branch,
    BASE_SHA: baseSha,
    SUPERVISOR_RUN_MARKER: marker,
  });
  if (data.landing) {
    env.PREVIOUS_RESULT_SHA = data.landing.previousResultSha;
    env.LAND_REASON = data.landing.reason;
    env.LAND_CONFLICT_FILES = data.landing.conflictFiles.join('\n');
    env.LAND_CHECK_LOG = data.landing.checkLog.slice(-MAX_ENV_VALUE);
  }
  return env;
}
