/**
 * The page's script (served as /assets/app.js): swaps in the server-rendered sections pushed by
 * Server-Sent Events, ticks the "in state" clocks, posts the controls with the CSRF token, and
 * tails an agent's log. No framework, no build; text from the server arrives escaped, and log
 * lines are inserted as text nodes.
 */
export const SCRIPT = String.raw`(function () {
  'use strict';
  var $ = function (id) { return document.getElementById(id); };
  var csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || '';
  var clockOffset = 0;
  var shown = {};
  var lastStatus = null;

  function fmt(ms) {
    var s = Math.max(0, Math.floor(ms / 1000));
    if (s < 60) return s + 's';
    if (s < 3600) return Math.floor(s / 60) + 'm ' + (s % 60) + 's';
    return Math.floor(s / 3600) + 'h ' + Math.floor((s % 3600) / 60) + 'm';
  }

  function tick() {
    var now = Date.now() + clockOffset;
    var els = document.querySelectorAll('[data-since]');
    for (var i = 0; i < els.length; i++) {
      var el = els[i];
      el.textContent = fmt(now - Number(el.getAttribute('data-since'))) + (el.getAttribute('data-suffix') || '');
    }
  }
  setInterval(tick, 1000);

  function message(text, isError) {
    var el = $('control-msg');
    el.textContent = text;
    el.className = 'control-msg' + (isError ? ' error' : '');
  }

  function apply(payload) {
    var st = payload.status;
    lastStatus = st;
    clockOffset = st.at - Date.now();
    Object.keys(payload.html).forEach(function (id) {
      var el = $(id);
      if (el && shown[id] !== payload.html[id]) {
        el.innerHTML = payload.html[id];
        shown[id] = payload.html[id];
      }
    });
    tick();
    document.body.setAttribute('data-desired', String(st.desiredAgents));
    document.body.setAttribute('data-agents', String(st.agents.length));
  }

  var live = $('live');
  function setLive(on, text) {
    live.className = 'live ' + (on ? 'on' : 'off');
    live.textContent = text;
  }

  var events = null;
  function connect() {
    events = new EventSource('api/events');
    events.addEventListener('status', function (e) {
      setLive(true, 'live');
      apply(JSON.parse(e.data));
    });
    events.onerror = function () {
      setLive(false, 'reconnecting…');
      // EventSource retries by itself unless the server refused the stream (e.g. 401).
      if (events.readyState === 2) setTimeout(function () { location.reload(); }, 3000);
    };
  }
  connect();

  function post(url, body) {
    return fetch(url, {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json', 'X-Supervisor-CSRF': csrf },
      body: JSON.stringify(body)
    }).then(function (res) {
      return res.json().catch(function () { return {}; }).then(function (j) {
        if (!res.ok) throw new Error((j.error || ('HTTP ' + res.status)) + (j.hint ? ' (' + j.hint + ')' : ''));
        return j;
      });
    });
  }

  function scale(n, pending, done) {
    var buttons = [$('start'), $('stop')];
    buttons.forEach(function (b) { b.disabled = true; });
    message(pending, false);
    post('api/scale', { count: n }).then(function () {
      message(done, false);
    }, function (err) {
      message(err.message, true);
    }).then(function () {
      buttons.forEach(function (b) { b.disabled = document.body.getAttribute('data-read-only') === 'true'; });
    });
  }

  var start = $('start');
  if (start) start.addEventListener('click', function () {
    var n = Number($('count').value);
    scale(n, 'Asking for ' + n + ' agent' + (n === 1 ? '' : 's') + '…', 'Scaling to ' + n + ' agent' + (n === 1 ? '' : 's') + '; they appear below as they start.');
  });
  var stop = $('stop');
  if (stop) stop.addEventListener('click', function () {
    scale(0, 'Stopping all agents…', 'Stopping all agents; running jobs are handed back to the queue.');
  });

  // View Logs: a live tail over SSE, the last lines first; EventSource resumes from the last byte seen.
  var logEvents = null;
  var MAX_LOG_LINES = 5000;
  var logOpener = null;
  function closeLogs() {
    if (logEvents) logEvents.close();
    logEvents = null;
    if ($('log-panel').hidden) return;
    $('log-panel').hidden = true;
    // Back to where the keyboard was: the View Logs button of that agent, if it is still there.
    var back = logOpener && document.querySelector('[data-logs="' + logOpener + '"]');
    if (back) back.focus();
    logOpener = null;
  }
  function openLogs(agentId) {
    if (logEvents) logEvents.close();
    logOpener = agentId;
    var pre = $('log-lines');
    pre.textContent = '';
    $('log-title').textContent = agentId;
    $('log-state').textContent = 'connecting…';
    $('log-panel').hidden = false;
    // The drawer takes the keyboard: its Close button first (Escape closes it too).
    $('log-close').focus();
    logEvents = new EventSource('api/agents/' + encodeURIComponent(agentId) + '/logs/stream?lines=200');
    logEvents.addEventListener('lines', function (e) {
      var lines = JSON.parse(e.data);
      var atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 8;
      var frag = document.createDocumentFragment();
      lines.forEach(function (l) {
        var div = document.createElement('div');
        div.className = 'log-line';
        div.textContent = l;
        frag.appendChild(div);
      });
      pre.appendChild(frag);
      while (pre.childNodes.length > MAX_LOG_LINES) pre.removeChild(pre.firstChild);
      if (atBottom) pre.scrollTop = pre.scrollHeight;
      $('log-state').textContent = 'following';
    });
    logEvents.addEventListener('reset', function () { pre.textContent = ''; });
    logEvents.addEventListener('nolog', function (e) { $('log-state').textContent = JSON.parse(e.data).message; });
    logEvents.onerror = function () { $('log-state').textContent = 'reconnecting…'; };
  }
  document.addEventListener('click', function (e) {
    var t = e.target;
    var btn = t && t.closest ? t.closest('[data-logs]') : null;
    if (btn) openLogs(btn.getAttribute('data-logs'));
    var restart = t && t.closest ? t.closest('[data-restart]') : null;
    if (restart) {
      var id = restart.getAttribute('data-restart');
      restart.disabled = true;
      message('Restarting ' + id + '…', false);
      post('api/agents/' + encodeURIComponent(id) + '/restart', {}).then(function () {
        message('Restarting ' + id + ': its job goes back to the queue, and a quarantine ends.', false);
      }, function (err) {
        message(err.message, true);
        restart.disabled = false;
      });
    }
  });
  $('log-close').addEventListener('click', closeLogs);
  document.addEventListener('keydown', function (e) { if (e.key === 'Escape') closeLogs(); });
})();
`;
