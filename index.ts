/**
 * agent-supervisor: run many AI coding agents in parallel on one repository.
 *
 * ```ts
 * import { openSupervisor } from 'agent-supervisor';
 * const sup = await openSupervisor({ repo: '.', config: { agentPreset: 'claude' } });
 * sup.addIssue({ title: 'Fix the login redirect', priority: 'high' });
 * await sup.start({ agents: 3 });
 * sup.onResult(({ issue }) => console.log(issue.id, issue.status, issue.branch));
 * ```
 */
export { openSupervisor, Supervisor } from './supervisor/api.js';
export type {
  IssueDetail,
  IssueSummary,
  OpenSupervisorOptions,
  ResultEvent,
} from './supervisor/api.js';
export type {
  AgentState,
  AgentStatus,
  QueueCounts,
  Status,
} from './supervisor/status.js';
export type { IssueStatus, NewIssue } from './supervisor/store/issues.js';
export type { Run, RunOutcome } from './supervisor/store/runs.js';
export type { IssueEdit } from './supervisor/issue-controls.js';
export type { LandOutcome } from './supervisor/land/lander.js';
export type { Landing } from './supervisor/land/landings.js';
export type { IssueEvent } from './supervisor/store/history.js';
export type { ConfigInput } from './supervisor/config.js';
export { AGENT_PRESETS } from './supervisor/config.js';
export { SupervisorError } from './supervisor/errors.js';
export type { ErrorCode } from './supervisor/errors.js';
// The job contract, for producers that add issues with plain BullMQ.
export {
  BULL_PRIORITY,
  JobDataSchema,
  JobResultSchema,
  PRIORITIES,
  jobIdForIssue,
  queueNameFor,
} from './contract/job.js';
export type {
  JobData,
  JobDataInput,
  JobResult,
  Priority,
} from './contract/job.js';
