import type { DiffStat, ReviewItem } from '../review.js';
import { escapeHtml as e } from './sections.js';

/** The buttons each status offers (the controls refuse the rest anyway, with a reason). */
const ACTIONS: Record<string, ReadonlyArray<'land' | 'retry' | 'cancel'>> = {
  done: ['land', 'cancel'],
  conflict: ['retry', 'cancel'],
  'check-failed': ['retry', 'cancel'],
  failed: ['retry'],
};
const LABELS = { land: 'Land', retry: 'Retry', cancel: 'Cancel' } as const;
const CLASSES = {
  land: 'btn-primary',
  retry: '',
  cancel: 'btn-danger',
} as const;

const firstLine = (s: string, max = 160): string => {
  const line = s.split('\n')[0] ?? '';
  return line.length > max ? `${line.slice(0, max - 1)}…` : line;
};

function diff(d: DiffStat | null): string {
  if (!d) return '<span class="muted">—</span>';
  return `<span class="mono"><span class="ins">+${e(d.insertions)}</span> <span class="del">−${e(d.deletions)}</span></span> <span class="muted small">${e(d.files)} file${d.files === 1 ? '' : 's'}</span>`;
}

function mergeState(r: ReviewItem): string {
  if (r.status !== 'done') return '';
  if (r.mergeable === null) return '<span class="muted">not checked yet</span>';
  return r.mergeable
    ? '<span class="ok">clean</span>'
    : `<span class="error">conflicts</span> <span class="mono small">${e(r.conflictFiles.join(', '))}</span>`;
}

function notes(r: ReviewItem): string {
  const out: string[] = [];
  for (const c of r.conflictsWith)
    out.push(
      `<div class="warn small" data-conflicts-with="${e(c.id)}">conflicts with <span class="num">#${e(c.id)}</span> in <span class="mono">${e(c.files.join(', '))}</span></div>`,
    );
  if (r.status !== 'done' && r.error)
    out.push(`<div class="error small">${e(firstLine(r.error))}</div>`);
  if (r.work)
    out.push(
      `<div class="small" data-work-ref="${e(r.work.ref)}">work kept: <span class="mono">${e(r.work.ref)}</span> ${diff(r.work.diff)}</div>`,
    );
  if (r.requeues > 0)
    out.push(
      `<div class="muted small">sent back ${e(r.requeues)}× by landing</div>`,
    );
  return out.join('');
}

function buttons(r: ReviewItem, readOnly: boolean): string {
  if (r.status === 'landing')
    return '<span class="muted small">landing…</span>';
  return (ACTIONS[r.status] ?? [])
    .map(
      (a) =>
        `<button type="button" class="btn btn-small ${CLASSES[a]}" data-review="${a}" data-issue="${e(r.id)}" aria-label="${LABELS[a]} issue #${e(r.id)}"${readOnly ? ' disabled' : ''}>${LABELS[a]}</button>`,
    )
    .join(' ');
}

/** The review section: done issues with what landing them would do, and issues sent back. */
export function renderReview(items: ReviewItem[], readOnly: boolean): string {
  if (items.length === 0)
    return '<p class="empty">Nothing to review: done issues appear here, ready to land.</p>';
  const rows = items
    .map(
      (r) => `<tr data-review-issue="${e(r.id)}" data-status="${e(r.status)}">
<td><span class="badge s-${e(r.status)}">${e(r.status)}</span></td>
<td><span class="num">#${e(r.id)}</span> <span class="title">${e(firstLine(r.title, 80))}</span>${notes(r)}</td>
<td class="nowrap">${diff(r.diff)}</td>
<td class="mono">${r.behind === null ? '<span class="muted">—</span>' : e(r.behind)}</td>
<td data-mergeable="${r.mergeable === null ? '' : String(r.mergeable)}">${mergeState(r)}</td>
<td class="actions nowrap">${buttons(r, readOnly)}</td>
</tr>`,
    )
    .join('\n');
  return `<div class="scroll-x" tabindex="0" role="region" aria-label="Issues to review"><table class="grid review"><thead><tr><th scope="col">Status</th><th scope="col">Issue</th><th scope="col">Diff</th><th scope="col">Behind</th><th scope="col">Mergeable</th><th scope="col"><span class="visually-hidden">Actions</span></th></tr></thead><tbody>${rows}</tbody></table></div>`;
}

/** Appended to the page's stylesheet. */
export const REVIEW_STYLE = String.raw`
#review .scroll-x{position:relative}
.review td{font-size:13px}
.review .nowrap{white-space:nowrap}
.review td.actions{text-align:right}
.review .ins{color:var(--green)}
.review .del{color:var(--red)}
.review .warn{color:#b54708}
.s-merged{background:#ecfdf3;color:#027a48;border-color:#abefc6}
.s-conflict,.s-check-failed{background:#fffaeb;color:#b54708;border-color:#fedf89}
.s-landing{background:#eff8ff;color:#175cd3;border-color:#b2ddff}
`;

/**
 * Appended to the page's script: the review buttons post the issue controls (the same JSON API
 * as any client, with the CSRF token) and say what came of it; the section itself follows by SSE.
 */
export const REVIEW_SCRIPT = String.raw`(function () {
  'use strict';
  var csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || '';
  var msg = document.getElementById('review-msg');
  function say(text, isError) {
    if (!msg) return;
    msg.textContent = text;
    msg.className = 'control-msg' + (isError ? ' error' : '');
  }
  function outcome(action, id, j) {
    if (action !== 'land') return 'Issue #' + id + ' is ' + j.status + '.';
    if (j.result === 'merged') return 'Issue #' + id + ' landed' + (j.landedSha ? ' as ' + j.landedSha.slice(0, 10) : '') + '.';
    return 'Issue #' + id + ': ' + j.result + (j.error ? ' — ' + j.error : '') + '.';
  }
  document.addEventListener('click', function (e) {
    var t = e.target;
    var btn = t && t.closest ? t.closest('[data-review]') : null;
    if (!btn || btn.disabled) return;
    var action = btn.getAttribute('data-review');
    var id = btn.getAttribute('data-issue');
    btn.disabled = true;
    say((action === 'land' ? 'Landing' : action === 'retry' ? 'Retrying' : 'Cancelling') + ' issue #' + id + '…', false);
    fetch('api/issues/' + encodeURIComponent(id) + '/' + action, {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json', 'X-Supervisor-CSRF': csrf },
      body: '{}'
    }).then(function (res) {
      return res.json().catch(function () { return {}; }).then(function (j) {
        if (!res.ok) throw new Error((j.error || ('HTTP ' + res.status)) + (j.hint ? ' (' + j.hint + ')' : ''));
        var bad = action === 'land' && j.result !== 'merged';
        say(outcome(action, id, j), bad);
      });
    }).catch(function (err) {
      say(err.message, true);
      btn.disabled = false;
    });
  });
})();
`;
