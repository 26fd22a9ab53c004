import type { Job } from 'bullmq';
import type { JobResult } from '../contract/job.js';
import type { AgentProcess } from './agent-process.js';

export type Log = (msg: string, fields?: Record<string, unknown>) => void;

/** The job a runner holds, while it holds it. */
export interface Current {
  job: Job<unknown, JobResult>;
  token: string;
  attempt: number;
  agent: AgentProcess | undefined;
  issueId: string;
  title: string;
  leaseLost: boolean;
}
