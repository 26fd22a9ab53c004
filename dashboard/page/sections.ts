import type { AgentStatus } from '../../supervisor/status.js';
import type { Snapshot } from '../snapshot.js';
import { describeUsage } from '../../contract/usage-text.js';
import {
  isKnownFailureKind,
  type AttemptFailureKind,
} from '../../contract/errors.js';

/**
 * Short labels of attempt-failure kinds, matched on the code (never on the message). Partial:
 * a kind appended to the contract without a label here shows as its code.
 */
const FAILURE_LABELS: Partial<Record<AttemptFailureKind, string>> = {
  'agent-exit': 'agent failed',
  'agent-not-found': 'command not found',
  'agent-spawn': 'could not start',
  'no-progress': 'no progress',
  'out-of-memory': 'out of memory',
  'before-job': 'setup failed',
  'runner-error': 'runner error',
  'lease-lost': 'lease lost',
  superseded: 'superseded',
  stalled: 'stalled',
  vanished: 'lost by Redis',
  'invalid-result': 'invalid result',
  'result-refused': 'result refused',
  'job-failed': 'failed',
  'usage-limit': 'usage limit',
  'missing-program': 'program missing',
  budget: 'over budget',
  disk: 'disk budget',
  'slot-broken': 'slot broken',
  poison: 'poison issue',
};

/** A kind this version does not know yet shows as its code. */
export function failureLabel(kind: string): string {
  return (isKnownFailureKind(kind) && FAILURE_LABELS[kind]) || kind;
}

/** Everything user-controlled (titles, errors, log lines) goes through here before it meets HTML. */
export function escapeHtml(value: unknown): string {
  return String(value ?? '').replace(
    /[&<>"']/g,
    (c) =>
      ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[
        c
      ]!,
  );
}

const e = escapeHtml;

export function formatDuration(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
}

/** How long a run took: tenths of a second for short ones. */
export function formatRunDuration(ms: number): string {
  if (ms < 10_000) return `${(Math.max(0, ms) / 1000).toFixed(1)}s`;
  return formatDuration(ms);
}

export function formatBytes(n: number): string {
  const gb = n / 1024 ** 3;
  return gb >= 10 ? `${gb.toFixed(0)} GB` : `${gb.toFixed(1)} GB`;
}

const firstLine = (s: string, max = 140): string => {
  const line = s.split('\n')[0] ?? '';
  return line.length > max ? `${line.slice(0, max - 1)}…` : line;
};

/**
 * Elapsed time: `now` given (first render) writes the text; without it the page's script fills
 * it in, so the pushed HTML only changes when the state does.
 */
const elapsed = (since: number, now: number | undefined, suffix = ''): string =>
  `<span class="mono since" data-since="${since}"${suffix ? ` data-suffix="${e(suffix)}"` : ''}>${now === undefined ? '' : e(formatDuration(now - since) + suffix)}</span>`;

const STATE_LABEL: Record<AgentStatus['state'], string> = {
  working: 'working',
  idle: 'idle',
  starting: 'starting',
  stopping: 'stopping',
  crashed: 'crashed',
  blocked: 'blocked',
  quarantined: 'quarantined',
};

function activityOf(a: AgentStatus, pendingTotal: number): string {
  if (a.state === 'working' && a.issue) {
    return `Working on <span class="num">#${e(a.issue.id)}</span> <span class="title">${e(firstLine(a.issue.title ?? ''))}</span>`;
  }
  if (a.state === 'idle')
    return pendingTotal > 0
      ? '<span class="muted">Idle (taking the next issue)</span>'
      : '<span class="muted">Idle (no issues)</span>';
  if (a.state === 'starting') return '<span class="muted">Starting…</span>';
  if (a.state === 'stopping')
    return '<span class="muted">Stopping (handing back its job)…</span>';
  if (a.state === 'blocked')
    return `<span class="error">Waiting for its git remote${a.lastError ? `: ${e(firstLine(a.lastError, 200))}` : ''}</span>`;
  if (a.state === 'quarantined')
    return `<span class="error">Quarantined (takes no jobs until restarted)${a.lastError ? `: ${e(firstLine(a.lastError.replace(/^quarantined: /, ''), 200))}` : ''}</span>`;
  return `<span class="error">Crashed${a.lastError ? `: ${e(firstLine(a.lastError, 200))}` : ''}</span>`;
}

/** The slot's dev environment in a few words (ports, Redis DB, database), read defensively. */
function envSummary(env: unknown): string {
  if (!env || typeof env !== 'object') return '';
  const v = env as {
    portBlock?: { start?: unknown; end?: unknown };
    redisDb?: unknown;
    postgresDb?: unknown;
  };
  const out: string[] = [];
  if (
    typeof v.portBlock?.start === 'number' &&
    typeof v.portBlock.end === 'number'
  )
    out.push(
      `ports <span class="mono">${v.portBlock.start}–${v.portBlock.end}</span>`,
    );
  if (typeof v.redisDb === 'number')
    out.push(`redis db <span class="mono">${v.redisDb}</span>`);
  if (typeof v.postgresDb === 'string' && v.postgresDb)
    out.push(`db <span class="mono">${e(v.postgresDb)}</span>`);
  return out.join(' · ');
}

function runtimeOf(a: AgentStatus): string {
  const parts: string[] = [];
  if (a.containerId)
    parts.push(
      `container <span class="mono">${e(a.containerId.slice(0, 12))}</span>`,
    );
  if (a.health)
    parts.push(
      `health <span class="health health-${e(a.health)}">${e(a.health)}</span>`,
    );
  if (!a.containerId && a.pid)
    parts.push(`pid <span class="mono">${e(a.pid)}</span>`);
  if (a.resources)
    parts.push(
      `<span class="mono" data-testid="resources">${e(a.resources.cpuPercent.toFixed(0))}% CPU · ${e(Math.round(a.resources.memoryBytes / 1024 ** 2))} MiB</span>`,
    );
  if (a.host && a.host !== 'local') parts.push(`on ${e(a.host)}`);
  if (a.restarts > 0)
    parts.push(`${e(a.restarts)} restart${a.restarts === 1 ? '' : 's'}`);
  return parts.join(' · ');
}

const NONE = '<span class="muted" aria-label="not known">—</span>';

/** CPU and memory of the slot's processes, when the supervisor measures them (else "—"). */
function resourcesOf(a: AgentStatus): string {
  const r = (a as { resources?: unknown }).resources as
    { cpuPercent?: unknown; memoryBytes?: unknown } | null | undefined;
  const cpu =
    typeof r?.cpuPercent === 'number'
      ? `<span class="mono">${e(r.cpuPercent.toFixed(0))}%</span>`
      : NONE;
  const mem =
    typeof r?.memoryBytes === 'number'
      ? `<span class="mono">${e(formatBytes(r.memoryBytes))}</span>`
      : NONE;
  return `<span class="label">CPU</span> ${cpu} <span class="label">mem</span> ${mem}`;
}

/** One agent: a table row on wide screens, a card (labelled cells) on narrow ones. */
export function renderAgents(s: Snapshot, now?: number): string {
  if (s.agents.length === 0) {
    return `<p class="empty">No agents running.${s.readOnly ? '' : ' Pick a count and press <strong>Start Agents</strong>.'}</p>`;
  }
  const rows = s.agents
    .map(
      (a) => `<tr data-agent="${e(a.id)}" data-state="${e(a.state)}">
<td class="state" data-label="State"><span class="dot dot-${e(a.state)}" aria-hidden="true"></span><span class="state-label">${e(STATE_LABEL[a.state])}</span></td>
<td class="mono agent-id" data-label="Agent">${e(a.id)}</td>
<td class="activity" data-label="Issue">${activityOf(a, s.pending.total)}</td>
<td class="time" data-label="In state">${elapsed(a.since, now)}</td>
<td class="env" data-label="Environment">${envSummary(a.env) || NONE}</td>
<td class="resources-cell" data-label="Resources">${resourcesOf(a)}</td>
<td class="runtime muted" data-label="Runtime">${runtimeOf(a) || NONE}</td>
<td class="actions"><button type="button" class="btn btn-small" data-logs="${e(a.id)}" aria-label="View logs of ${e(a.id)}">View Logs</button>${s.readOnly || a.external ? '' : ` <button type="button" class="btn btn-small" data-restart="${e(a.id)}" aria-label="Restart ${e(a.id)}">Restart</button>`}</td>
</tr>`,
    )
    .join('\n');
  return `<table class="grid agents"><thead><tr><th scope="col">State</th><th scope="col">Agent</th><th scope="col">Issue</th><th scope="col">In state</th><th scope="col">Environment</th><th scope="col">CPU / memory</th><th scope="col">Runtime</th><th scope="col"><span class="visually-hidden">Actions</span></th></tr></thead><tbody>${rows}</tbody></table>`;
}

export function renderQueue(s: Snapshot): string {
  if (s.pending.items.length === 0)
    return '<p class="empty">No open issues. Add one with <code>supervisor issue add "…"</code>.</p>';
  const items = s.pending.items
    .map(
      (i, k) =>
        `<li data-issue="${e(i.id)}"><span class="pos">${k + 1}</span><span class="num">#${e(i.id)}</span><span class="badge p-${e(i.priority)}">${e(i.priority)}</span><span class="title">${e(firstLine(i.title))}</span></li>`,
    )
    .join('\n');
  const more =
    s.pending.total > s.pending.items.length
      ? `<p class="muted more">and ${s.pending.total - s.pending.items.length} more</p>`
      : '';
  return `<ol class="queue">${items}</ol>${more}`;
}

export function renderResults(s: Snapshot, now?: number): string {
  if (s.recent.length === 0)
    return '<p class="empty">No finished issues yet.</p>';
  const rows = s.recent
    .map(
      (r) => `<tr data-result="${e(r.id)}" data-status="${e(r.status)}">
<td><span class="badge s-${e(r.status)}">${e(r.status)}</span></td>
<td><span class="num">#${e(r.id)}</span> <span class="title">${e(firstLine(r.title, 80))}</span>${r.status === 'failed' && r.error ? `<div class="error small"${r.errorKind ? ` data-kind="${e(r.errorKind)}"` : ''}>${r.errorKind ? `<span class="kind">${e(failureLabel(r.errorKind))}</span> ` : ''}${e(firstLine(r.error, 160))}</div>` : ''}</td>
<td class="mono">${r.branch ? e(r.branch) : '<span class="muted">—</span>'}</td>
<td class="mono">${r.commit ? e(r.commit.slice(0, 8)) : '<span class="muted">no change</span>'}</td>
<td class="mono">${r.durationMs === null ? '' : e(formatRunDuration(r.durationMs))}</td>
<td class="mono muted">${r.agent ? e(r.agent) : ''}</td>
<td class="muted">${elapsed(r.finishedAt, now, ' ago')}</td>
</tr>`,
    )
    .join('\n');
  return `<div class="scroll-x" tabindex="0" role="region" aria-label="Recent results"><table class="grid results"><thead><tr><th scope="col">Result</th><th scope="col">Issue</th><th scope="col">Branch</th><th scope="col">Commit</th><th scope="col">Took</th><th scope="col">Agent</th><th scope="col">Finished</th></tr></thead><tbody>${rows}</tbody></table></div>`;
}

export function renderResources(s: Snapshot): string {
  const p = s.platform;
  const os = p.os === 'darwin' ? 'macOS' : p.os === 'linux' ? 'Linux' : p.os;
  const q = s.queue;
  const queue = q
    ? `${q.waiting + q.prioritized} waiting · ${q.active} active · ${q.delayed} delayed · ${q.completed} completed · ${q.failed} failed`
    : '<span class="error">Redis unreachable</span>';
  return `<dl class="resources">
<div><dt>Platform</dt><dd>${e(os)} ${e(p.arch)}</dd></div>
<div><dt>Memory</dt><dd><span class="mono">${e(formatBytes(p.usedMemoryBytes))} / ${e(formatBytes(p.memoryBytes))}</span> <meter min="0" max="${p.memoryBytes}" value="${p.usedMemoryBytes}" high="${Math.round(p.memoryBytes * 0.85)}"></meter></dd></div>
<div><dt>CPUs</dt><dd class="mono">${e(p.cpus)}</dd></div>
<div><dt>Max agents</dt><dd class="mono">${e(p.maxAgents)}</dd></div>
<div class="wide"><dt>Queue</dt><dd>${queue}</dd></div>
</dl>`;
}

/** The line under the controls: desired vs running, the supervisor, and recent activity. */
export function renderSummary(s: Snapshot): string {
  const up = s.agents.filter(
    (a) => a.state === 'idle' || a.state === 'working',
  ).length;
  const sup = s.supervisor.running
    ? `<span class="ok">supervisor running</span> <span class="muted">(pid ${e(s.supervisor.pid)})</span>`
    : '<span class="error">supervisor not running</span> <span class="muted">— start it with <code>supervisor start</code></span>';
  const total = Object.values(s.issues).reduce((a, b) => a + b, 0);
  // A repository with nothing yet: say what to do first instead of an error on Start.
  if (total === 0 && s.agents.length === 0)
    return `<div class="guide" data-guide="first-steps">
<p><strong>Nothing to work on yet.</strong> Two steps get the agents going:</p>
<ol>
<li>Add an issue: <code>supervisor issue add "Fix the login redirect" --body "…"</code></li>
<li>${s.supervisor.running ? 'Pick a count above and press <strong>Start Agents</strong>' : 'Start the supervisor with agents: <code>supervisor start --agents 2</code> (this page then shows them)'}</li>
</ol>
${s.warnings.map((w) => `<p class="warning">${e(w)}</p>`).join('')}
</div>`;
  const activity = s.activity.length
    ? `<ul class="activity-log">${s.activity
        .slice(-4)
        .reverse()
        .map(
          (a) =>
            `<li class="${a.level === 'error' ? 'error' : ''}">${a.agentId ? `<span class="mono">${e(a.agentId)}</span>: ` : ''}${e(firstLine(a.message, 200))}</li>`,
        )
        .join('')}</ul>`
    : '';
  const warnings = s.warnings
    .map((w) => `<p class="warning">${e(w)}</p>`)
    .join('');
  const pause = s.pause
    ? `<p class="warning" data-testid="pause">${e(s.pause.text)}${s.pause.reason ? ` — ${e(firstLine(s.pause.reason, 160))}` : ''}</p>`
    : '';
  return `${pause}<p><strong class="mono">${up}</strong> of <strong class="mono">${e(s.desiredAgents)}</strong> desired agents up · ${sup}</p>${renderCosts(s.costs)}${activity}${warnings}`;
}

/** Tokens and cost today and this week (issue 12): one line, shown once anything was spent. */
function renderCosts(c: Snapshot['costs']): string {
  if (!c.week.runs) return '';
  const budget =
    c.budget.daily === null
      ? ''
      : ` <span class="muted">of $${e(c.budget.daily.toFixed(2))} daily budget</span>`;
  return `<p data-testid="costs">Cost: today <span class="mono">${e(describeUsage(c.today))}</span>${budget} · this week <span class="mono">${e(describeUsage(c.week))}</span></p>`;
}

export type SectionId =
  'summary' | 'agents' | 'queue' | 'results' | 'resources';

export function renderSections(
  s: Snapshot,
  now?: number,
): Record<SectionId, string> {
  return {
    summary: renderSummary(s),
    agents: renderAgents(s, now),
    queue: renderQueue(s),
    results: renderResults(s, now),
    resources: renderResources(s),
  };
}
