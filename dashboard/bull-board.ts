import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { ExpressAdapter } from '@bull-board/express';
import type { Queue } from 'bullmq';
import type { Router } from 'express';

const BODY_SHOWN = 4000;

/** Bull Board for the repository's queue, served under `basePath`; read-only hides and refuses its actions. */
export function bullBoardRouter(
  queue: Queue,
  o: { basePath: string; readOnly: boolean; repoName: string },
): Router {
  const serverAdapter = new ExpressAdapter();
  serverAdapter.setBasePath(o.basePath);
  const adapter = new BullMQAdapter(queue, {
    readOnlyMode: o.readOnly,
    allowRetries: !o.readOnly,
    displayName: `issues · ${o.repoName}`,
    description:
      'One job per issue (job id issue-<id>); the data is the issue the agent works on.',
  });
  // Job lists show the issue rather than BullMQ's job name.
  adapter.setFormatter(
    'name',
    (job: { name?: string; data?: { issueId?: number; title?: string } }) =>
      job.data?.title
        ? `${job.data.issueId ? `#${job.data.issueId} ` : ''}${job.data.title}`
        : (job.name ?? ''),
  );
  adapter.setFormatter('data', (data: unknown) => {
    if (!data || typeof data !== 'object') return data;
    const d = data as { body?: unknown };
    if (typeof d.body === 'string' && d.body.length > BODY_SHOWN)
      return {
        ...d,
        body: `${d.body.slice(0, BODY_SHOWN)}… (${d.body.length} characters)`,
      };
    return data;
  });
  createBullBoard({
    queues: [adapter],
    serverAdapter,
    options: {
      uiConfig: {
        boardTitle: 'agent-supervisor',
        miscLinks: [{ text: 'Parallel Agents', url: '/' }],
        hideDocsLink: true,
      },
    },
  });
  return serverAdapter.getRouter() as Router;
}
