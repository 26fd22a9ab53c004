import { basename } from 'node:path';
import type { Snapshot } from '../snapshot.js';
import { renderReview } from './review.js';
import { escapeHtml as e, renderSections } from './sections.js';

export interface PageOptions {
  csrfToken: string;
  /** A token protects the dashboard: show the log-out button. */
  loggedIn: boolean;
}

const FAVICON =
  "data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 16 16'%3E%3Cpath d='M8 1l7 7-7 7-7-7z' fill='%232563eb'/%3E%3C/svg%3E";

function countOptions(max: number, selected: number): string {
  const out: string[] = [];
  for (let n = 1; n <= max; n++)
    out.push(
      `<option value="${n}"${n === selected ? ' selected' : ''}>${n}</option>`,
    );
  return out.join('');
}

/** The Parallel Agents page, rendered with live data; the script keeps it current over SSE. */
export function renderPage(s: Snapshot, o: PageOptions): string {
  const sec = renderSections(s, s.at);
  const repo = basename(s.repo.root);
  const disabled = s.readOnly ? ' disabled' : '';
  const selected = Math.min(
    Math.max(s.desiredAgents || Math.min(3, s.maxAgents), 1),
    s.maxAgents,
  );
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="csrf-token" content="${e(o.csrfToken)}">
<title>Parallel Agents · ${e(repo)}</title>
<link rel="icon" href="${FAVICON}">
<link rel="stylesheet" href="assets/app.css">
<script src="assets/app.js" defer></script>
</head>
<body data-read-only="${s.readOnly}">
<header class="top">
  <div class="brand"><span class="logo">◆</span> agent-supervisor</div>
  <nav>
    <span class="tab current">Parallel Agents</span>
    <a class="tab" href="queues/">Bull Board</a>
    <a class="tab" href="metrics">Metrics</a>
    <a class="tab" href="api/status">API</a>
  </nav>
  <div class="right">
    <span id="live" class="live off" title="Server-Sent Events">connecting…</span>
    ${o.loggedIn ? '<form method="post" action="logout" class="inline"><button class="btn btn-ghost" type="submit">Log out</button></form>' : ''}
  </div>
</header>
<main>
  <div class="title-row">
    <h1>Parallel Agents</h1>
    <p class="muted repo" title="${e(s.repo.root)}"><span class="mono">${e(s.repo.root)}</span> · queue <span class="mono">${e(s.repo.queue)}</span></p>
  </div>

  <section class="card controls" aria-label="Controls">
    <div class="control-row">
      <label for="count">Agent Count</label>
      <select id="count" name="count"${disabled}>${countOptions(s.maxAgents, selected)}</select>
      <button type="button" id="start" class="btn btn-primary"${disabled}>▶ Start Agents</button>
      <button type="button" id="stop" class="btn btn-danger"${disabled}>■ Stop All</button>
      ${s.readOnly ? '<span class="badge ro">read-only</span>' : ''}
      <span id="control-msg" class="control-msg" role="status" aria-live="polite"></span>
    </div>
    <div id="summary" class="summary">${sec.summary}</div>
  </section>

  <section class="card">
    <h2>Running Agents</h2>
    <div id="agents">${sec.agents}</div>
  </section>

  <section class="card" aria-labelledby="review-heading">
    <h2 id="review-heading">Review &amp; Land <span class="muted small">done issues, and issues sent back</span></h2>
    <span id="review-msg" class="control-msg" role="status" aria-live="polite"></span>
    <div id="review">${renderReview(s.review, s.readOnly)}</div>
  </section>

  <div class="columns">
    <section class="card">
      <h2>Open Issues Queue <span class="muted small">in the order they will be taken</span></h2>
      <div id="queue">${sec.queue}</div>
    </section>
    <section class="card">
      <h2>Recent Results</h2>
      <div id="results">${sec.results}</div>
    </section>
  </div>

  <section class="card">
    <h2>Resource Usage</h2>
    <div id="resources">${sec.resources}</div>
  </section>
</main>

<section id="log-panel" class="log-panel" hidden role="dialog" aria-modal="false" aria-labelledby="log-heading" tabindex="-1">
  <div class="log-head">
    <h2 id="log-heading" class="log-heading">Logs · <span id="log-title" class="mono"></span></h2>
    <span id="log-state" class="muted small"></span>
    <button type="button" id="log-close" class="btn btn-small">Close</button>
  </div>
  <pre id="log-lines" class="log-lines" tabindex="0" aria-label="log lines"></pre>
</section>
</body>
</html>
`;
}

/** The login form of a token-protected dashboard (served with status 401). */
export function renderLogin(o: { error?: string; nonce: string }): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Log in · agent-supervisor</title>
<link rel="icon" href="${FAVICON}">
<style nonce="${e(o.nonce)}">
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",sans-serif;background:#f4f5f7;color:#1d2330;display:grid;place-items:center;min-height:100vh;margin:0}
form{background:#fff;border:1px solid #dde1e7;border-radius:10px;padding:28px 32px;width:340px;box-shadow:0 1px 3px rgba(0,0,0,.06)}
h1{font-size:18px;margin:0 0 4px}p{color:#5b6474;margin:0 0 16px;font-size:13px}
input{width:100%;box-sizing:border-box;padding:8px 10px;border:1px solid #c9ced6;border-radius:6px;font:inherit;margin-bottom:12px}
button{width:100%;padding:8px;border:0;border-radius:6px;background:#2563eb;color:#fff;font:inherit;font-weight:600;cursor:pointer}
.error{color:#b42318;font-size:13px;margin:0 0 12px}
</style>
</head>
<body>
<form method="post" action="login">
  <h1>agent-supervisor</h1>
  <p>This dashboard is protected. Enter the token from <code>SUPERVISOR_DASHBOARD_TOKEN</code>.</p>
  ${o.error ? `<div class="error">${e(o.error)}</div>` : ''}
  <input type="password" name="token" autocomplete="current-password" placeholder="Token" required autofocus>
  <button type="submit">Log in</button>
</form>
</body>
</html>
`;
}
