// Backtest progress, pushed over /ws/backtests/<run_id>/ (one run's page) or /ws/backtests/ (the list).
// Messages are {"event": {...}} from apps/review/progress.py: kind "progress" (processed/total, elapsed, ETA) or
// "status" (the run's state: sent on connect and at the end). A static file: the CSP allows scripts from 'self' only.
(function () {
  "use strict";

  function text(id, value) {
    const el = document.getElementById(id);
    if (el) { el.textContent = value; }
  }

  function seconds(s) {
    if (s === null || s === undefined) { return "—"; }
    if (s < 60) { return s.toFixed(1) + " s"; }
    return Math.floor(s / 60) + " min " + Math.round(s % 60) + " s";
  }

  function showLink(ev) {
    const row = document.getElementById("review-link-row");
    if (!row || !ev.review_url || document.getElementById("review-link")) { return; }
    const a = document.createElement("a");
    a.id = "review-link";
    a.href = ev.review_url;
    a.textContent = "Review session #" + ev.session_id;
    row.replaceChildren(a);
  }

  function onRunEvent(root, ev) {
    if (String(ev.run_id) !== root.dataset.runId) { return; }
    text("run-status", ev.status);
    if (ev.kind === "progress") {
      const bar = document.getElementById("run-progress");
      if (bar && ev.total > 0) { bar.value = ev.processed / ev.total; }
      text("run-processed", ev.processed.toLocaleString("en-US"));
      text("run-total", ev.total.toLocaleString("en-US"));
      text("run-elapsed", seconds(ev.elapsed_s));
      text("run-eta", seconds(ev.eta_s));
      return;
    }
    if (ev.status === "done") {
      const bar = document.getElementById("run-progress");
      if (bar) { bar.value = 1; }
      text("run-eta", "0 s");
      Object.entries(ev.summary || {}).forEach(function ([key, value]) {
        const cell = document.querySelector('#run-summary [data-key="' + key + '"]');
        if (cell && value !== null && value !== undefined) { cell.textContent = value; }
      });
      showLink(ev);
    }
    if (ev.status === "failed") { text("run-error", ev.error || "failed"); }
  }

  function onListEvent(ev) {
    const row = document.querySelector('#runs-table tr[data-run-id="' + ev.run_id + '"] .run-status');
    if (!row) { return; }
    row.textContent = ev.kind === "progress" && ev.total > 0
      ? "running " + Math.round(100 * ev.processed / ev.total) + " %"
      : ev.status;
  }

  function connect(root, handle) {
    const scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    let closedByServer = false;
    const ws = new WebSocket(scheme + window.location.host + root.dataset.ws);
    ws.onmessage = function (msg) {
      const data = JSON.parse(msg.data);
      if (data && data.event) {
        handle(data.event);
        if (data.event.kind === "status" && (data.event.status === "done" || data.event.status === "failed")
            && root.id === "run") {
          closedByServer = true;
          ws.close();
        }
      }
    };
    ws.onclose = function (e) {
      // reconnect after a dropped connection (a refused one, 44xx, stays closed)
      if (!closedByServer && e.code < 4000) { window.setTimeout(function () { connect(root, handle); }, 2000); }
    };
  }

  document.addEventListener("DOMContentLoaded", function () {
    const run = document.getElementById("run");
    if (run && run.dataset.ws) {
      if (document.getElementById("run-status").textContent.trim() === "done") { return; }
      connect(run, function (ev) { onRunEvent(run, ev); });
    }
    const list = document.getElementById("runs-list");
    if (list && list.dataset.ws) { connect(list, onListEvent); }
  });
})();
