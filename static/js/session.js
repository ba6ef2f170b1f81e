// The live session page: one WebSocket, JSON snapshots (latest wins) and events, drawn with uPlot.
// A static file, not an inline script: the Content-Security-Policy allows scripts from 'self' only. All text is
// put in the page with textContent (never innerHTML), so nothing pushed can become markup.
(function () {
  "use strict";

  const root = document.getElementById("live-root");
  if (!root) { return; }
  const HISTORY_S = 15 * 60; // the widest window the picker offers
  const PART_NAMES = ["spread_capture", "adverse_selection", "inventory", "fees", "funding"];
  const PART_LABELS = {
    spread_capture: "spread capture", adverse_selection: "adverse selection", inventory: "inventory",
    fees: "fees", funding: "funding",
  };

  // --- formatting ---------------------------------------------------------------------------
  function fmt(v, digits) {
    if (v === null || v === undefined || typeof v !== "number" || !isFinite(v)) { return "—"; }
    return v.toFixed(digits);
  }
  function utc(ns) {
    if (!ns) { return "—"; }
    return new Date(ns / 1e6).toISOString().substring(11, 23);
  }
  function setText(id, text) {
    const el = document.getElementById(id);
    if (el && el.textContent !== text) { el.textContent = text; }
  }
  function cell(tr, text, title) {
    const td = document.createElement("td");
    td.textContent = text;
    if (title) { td.title = title; }
    tr.appendChild(td);
    return td;
  }
  function fillTable(id, rows) { // rows: arrays of [text, title?] cells
    const table = document.getElementById(id);
    if (!table) { return; }
    const body = table.tBodies[0];
    const frag = document.createDocumentFragment();
    rows.forEach(function (r) {
      const tr = document.createElement("tr");
      r.forEach(function (c) { if (Array.isArray(c)) { cell(tr, c[0], c[1]); } else { cell(tr, c); } });
      frag.appendChild(tr);
    });
    body.replaceChildren(frag);
  }

  // --- history (for the charts), de-duplicated by id --------------------------------------------
  const points = []; // [t_s, mid, micro, bid, ask, pnl parts..., total]
  const trades = new Map(); // id -> {t, px, side}
  const fills = new Map();
  const markers = new Map(); // audit id -> {t, label, title}
  let windowS = 300;
  let status = root.querySelector("#session-status") ? root.querySelector("#session-status").textContent.trim() : "";
  let statusHeldUntil = 0; // after a pushed status event, a snapshot built before it does not flip the badge back
  let heldStatus = null;
  let lastFills = null;
  let lastSnapshotAt = 0;

  function prune(nowS) {
    const cut = nowS - HISTORY_S;
    while (points.length && points[0][0] < cut) { points.shift(); }
    [trades, fills].forEach(function (m) {
      m.forEach(function (v, k) { if (v.t < cut) { m.delete(k); } });
    });
  }

  function remember(s) {
    const t = (s.ts_ns || s.built_ns) / 1e9;
    const m = s.market || {}, q = s.quotes || {}, p = (s.pnl && s.pnl.parts) || {};
    if (points.length && points[points.length - 1][0] >= t) { return; }
    const row = [t, m.mid, m.microprice, q.bid_px, q.ask_px];
    PART_NAMES.forEach(function (n) { row.push(p[n]); });
    row.push(s.pnl ? s.pnl.total : null);
    points.push(row);
    (s.trades || []).forEach(function (x) { if (!trades.has(x.id)) { trades.set(x.id, { t: x.ts_ns / 1e9, px: x.px, side: x.side }); } });
    (s.fills || []).forEach(function (x) { if (!fills.has(x.id)) { fills.set(x.id, { t: x.ts_ns / 1e9, px: x.px, side: x.side }); } });
    prune(t);
  }

  // --- charts ---------------------------------------------------------------------------------
  const utcDate = function (ts) { return uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC"); };
  // tick labels as 24-hour UTC clock time (uPlot's default is a 12-hour local format)
  const utcTicks = function (u, splits) {
    return splits.map(function (v) { return v === null ? "" : new Date(v * 1e3).toISOString().substring(11, 19); });
  };
  let priceChart = null, pnlChart = null;

  function markerHook(u) { // parameter changes: dashed vertical lines with their version
    const ctx = u.ctx, top = u.bbox.top, h = u.bbox.height;
    ctx.save();
    ctx.strokeStyle = "#e0a030";
    ctx.fillStyle = "#e0a030";
    ctx.setLineDash([4, 4]);
    ctx.font = (11 * devicePixelRatio) + "px sans-serif";
    markers.forEach(function (mk) {
      const x = u.valToPos(mk.t, "x", true);
      if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) { return; }
      ctx.beginPath(); ctx.moveTo(x, top); ctx.lineTo(x, top + h); ctx.stroke();
      ctx.fillText(mk.label, x + 3, top + 12 * devicePixelRatio);
    });
    ctx.restore();
  }

  function xSeries() { // the legend's time, UTC with milliseconds
    return { label: "time (UTC)", value: function (u, v) { return v === null ? "--" : new Date(v * 1e3).toISOString().substring(11, 23); } };
  }

  function width(el) { return Math.max(300, el.clientWidth || 600); }

  function makeCharts() {
    if (typeof uPlot === "undefined") { return; }
    const pe = document.getElementById("price-chart");
    const points6 = function (color) { return { show: true, size: 7, stroke: color, fill: color }; };
    priceChart = new uPlot({
      width: width(pe), height: 300, tzDate: utcDate,
      scales: { x: { time: true } },
      axes: [
        { stroke: "#8a97a3", grid: { stroke: "#263340" }, label: "time (UTC)", values: utcTicks, space: 70 },
        { stroke: "#8a97a3", grid: { stroke: "#263340" }, label: "price (quote ccy)", size: 80 },
      ],
      series: [
        xSeries(),
        { label: "mid", stroke: "#e6e6e6", width: 1, spanGaps: true },
        { label: "microprice", stroke: "#b58cff", width: 1, dash: [4, 3], spanGaps: true },
        { label: "our bid", stroke: "#3ecf8e", width: 1.5, spanGaps: false },
        { label: "our ask", stroke: "#ff5c5c", width: 1.5, spanGaps: false },
        { label: "market trades", stroke: "#4fb3ff", paths: function () { return null; }, points: { show: true, size: 3, stroke: "#4fb3ff", fill: "#4fb3ff" } },
        { label: "our buys ▲", stroke: "#3ecf8e", paths: function () { return null; }, points: points6("#3ecf8e") },
        { label: "our sells ▼", stroke: "#ff5c5c", paths: function () { return null; }, points: points6("#ff5c5c") },
      ],
      hooks: { draw: [markerHook] },
    }, [[], [], [], [], [], [], [], []], pe);
    const ce = document.getElementById("pnl-parts-chart");
    const colors = ["#3ecf8e", "#ff5c5c", "#4fb3ff", "#e0a030", "#b58cff"];
    const series = [xSeries()];
    PART_NAMES.forEach(function (n, i) { series.push({ label: PART_LABELS[n], stroke: colors[i], width: 1.5, spanGaps: true }); });
    series.push({ label: "total", stroke: "#e6e6e6", width: 2, spanGaps: true });
    pnlChart = new uPlot({
      width: width(ce), height: 220, tzDate: utcDate,
      scales: { x: { time: true } },
      axes: [
        { stroke: "#8a97a3", grid: { stroke: "#263340" }, label: "time (UTC)", values: utcTicks, space: 70 },
        { stroke: "#8a97a3", grid: { stroke: "#263340" }, label: "P&L (quote ccy)", size: 70 },
      ],
      series: series,
      hooks: { draw: [markerHook] },
    }, [[]].concat(series.slice(1).map(function () { return []; })), ce);
    window.addEventListener("resize", function () {
      priceChart.setSize({ width: width(pe), height: 300 });
      pnlChart.setSize({ width: width(ce), height: 220 });
    });
  }

  function drawCharts() {
    if (!priceChart || !points.length) { return; }
    const nowS = points[points.length - 1][0];
    const from = nowS - windowS;
    // one aligned x array for lines, trades and fills (uPlot's data model); lines span the gaps
    const rows = [];
    points.forEach(function (p) { if (p[0] >= from) { rows.push([p[0], p[1], p[2], p[3], p[4], null, null, null]); } });
    trades.forEach(function (x) { if (x.t >= from) { rows.push([x.t, null, null, undefined, undefined, x.px, null, null]); } });
    fills.forEach(function (x) {
      if (x.t >= from) { rows.push([x.t, null, null, undefined, undefined, null, x.side === "buy" ? x.px : null, x.side === "sell" ? x.px : null]); }
    });
    rows.sort(function (a, b) { return a[0] - b[0]; });
    // our quotes are steps: carry the last quote over the extra x values (null where we had none)
    let bid = null, ask = null;
    const cols = [[], [], [], [], [], [], [], []];
    rows.forEach(function (r) {
      if (r[3] !== undefined) { bid = r[3]; ask = r[4]; }
      r[3] = bid; r[4] = ask;
      for (let i = 0; i < 8; i++) { cols[i].push(r[i] === undefined ? null : r[i]); }
    });
    // uPlot cannot lay out an axis over an empty range (one x value, or no finite y): wait for a second point
    const hasY = function (cs) { return cs.slice(1).some(function (c) { return c.some(function (v) { return v !== null && isFinite(v); }); }); };
    if (cols[0].length < 2 || !hasY(cols) || nowS <= from) { return; }
    priceChart.setData(cols);
    priceChart.setScale("x", { min: from, max: nowS });
    const pcols = [[], [], [], [], [], [], []];
    points.forEach(function (p) {
      if (p[0] < from) { return; }
      pcols[0].push(p[0]);
      for (let i = 0; i < 6; i++) { pcols[i + 1].push(p[5 + i] === undefined ? null : p[5 + i]); }
    });
    if (pcols[0].length < 2 || !hasY(pcols)) { return; }
    pnlChart.setData(pcols);
    pnlChart.setScale("x", { min: from, max: nowS });
  }

  // --- panels -----------------------------------------------------------------------------------
  function showStatus(st, words) {
    const el = document.getElementById("session-status");
    if (!el || !st) { return; }
    if (el.textContent.trim() !== st) {
      el.textContent = st;
      el.className = "status status-" + st.split(" ")[0];
      const live = document.getElementById("live-state");
      if (live) { live.dataset.status = st; }
    }
    if (words !== undefined) { setText("quote-reasons", words); }
    if (status !== st) {
      const changed = status !== "";
      status = st;
      if (changed && window.htmx) { htmx.trigger(document.body, "mm:statuschange"); }
    }
  }

  function reasonsLine(s) {
    const st = s.status || "";
    const d = s.decision;
    if (st === "running" || st === "created") {
      if (s.risk && !s.risk.quoting) { return s.risk.mode_words; }
      return d && d.reasons.length ? d.reasons.map(function (r) { return r.text; }).join(" · ") : "quoting";
    }
    if (st === "reducing") { return "reduce only: orders that would grow |inventory| are not sent"; }
    return "not quoting: session " + st;
  }

  function renderTiles(s) {
    const m = s.market || {}, q = s.quotes || {}, e = s.estimators || {}, g = s.gamma || {}, inv = s.inventory || {};
    const k = e.kappa || {}, sg = e.sigma || {};
    setText("v-mid", fmt(m.mid, 2));
    setText("v-bid", fmt(q.bid_px, 2));
    setText("v-ask", fmt(q.ask_px, 2));
    setText("v-spread", fmt(q.spread_bps, 2));
    setText("v-mkt-spread", fmt(q.market_spread_bps, 2));
    setText("v-kappa", fmt(k.value, 0));
    setText("v-kappa-state", "(" + (k.state || "—") + ")");
    setText("v-kappa-ci", k.ci_low !== null && k.ci_low !== undefined ? "[" + fmt(k.ci_low, 0) + ", " + fmt(k.ci_high, 0) + "]" : "");
    setText("v-sigma", fmt(sg.value_bps, 3));
    setText("v-sigma-state", "(" + (sg.state || "—") + ")");
    setText("v-sigma-split", fmt(sg.clean_bps, 3) + " / " + fmt(sg.total_bps, 3));
    setText("v-gamma", fmt(g.value, 3));
    setText("v-gamma-base", fmt(g.base, 3));
    setText("v-inventory", fmt(inv.q, 4));
    setText("v-q-ratio", inv.q_ratio === null || inv.q_ratio === undefined ? "—" : fmt(inv.q_ratio * 100, 1) + " %");
    setText("v-skew", fmt(inv.skew_bps, 2));
    setText("v-pnl", fmt(s.pnl ? s.pnl.session_total : null, 2));
    setText("v-fills", String(s.counts ? s.counts.fills : 0));
    setText("v-open-orders", String(s.counts ? s.counts.open_orders : 0));
  }

  function renderPnl(s) {
    const p = s.pnl;
    if (!p) { return; }
    setText("p-total", fmt(p.total, 4));
    PART_NAMES.forEach(function (n) { setText("p-" + n, fmt(p.parts[n], 4)); });
    setText("pnl-note", "markout horizon " + fmt(p.markout_s, 1) + " s · " + p.fills_this_run + " fill(s) this run · session mark " + fmt(p.session_total, 4) + " (includes a position carried from an earlier run)");
  }

  function renderWhy(s) {
    const d = s.decision;
    const ul = document.getElementById("why-reasons");
    if (!d) { setText("why-time", "no decision yet"); ul.replaceChildren(); return; }
    setText("why-time", "decision at " + utc(d.ts_ns) + " UTC");
    const frag = document.createDocumentFragment();
    if (!d.reasons.length) {
      const li = document.createElement("li"); li.textContent = "Quoting normally: nothing bound or was dropped."; frag.appendChild(li);
    }
    d.reasons.forEach(function (r) {
      const li = document.createElement("li");
      li.textContent = r.text;
      li.title = r.raw; // the engine's own words and numbers, on hover
      li.dataset.code = r.code;
      frag.appendChild(li);
    });
    ul.replaceChildren(frag);
    const k = d.key_inputs || {};
    fillTable("why-inputs", [
      ["model bid / ask", fmt(d.bid_px, 2) + " / " + fmt(d.ask_px, 2) + " quote ccy"],
      ["sizes bid / ask", fmt(d.bid_size, 4) + " / " + fmt(d.ask_size, 4) + " base"],
      ["reservation price", fmt(k.reservation_price, 2) + " quote ccy"],
      ["half-spread", fmt(k.half_spread_bps, 3) + " bps"],
      ["skew (total)", fmt(k.skew_bps, 3) + " bps"],
      ["  inventory term", fmt(k.inventory_term_bps, 3) + " bps"],
      ["  drift term", fmt(k.drift_term_bps, 3) + " bps"],
      ["  funding term", fmt(k.funding_term_bps, 3) + " bps"],
      ["  imbalance / flow skew", fmt(k.imbalance_skew_bps, 3) + " / " + fmt(k.flow_skew_bps, 3) + " bps"],
      ["  microprice term", fmt(k.microprice_term_bps, 3) + " bps"],
      ["horizon T", fmt(k.horizon_s, 1) + " s"],
      ["adverse selection / maker fee", fmt(k.adverse_selection_bps, 3) + " / " + fmt(k.maker_fee_bps, 3) + " bps"],
    ]);
    const all = Object.keys(d.inputs).sort().map(function (name) {
      const v = d.inputs[name];
      return [name, typeof v === "number" ? String(Number(v.toPrecision(8))) : "—"];
    });
    fillTable("why-all", all);
  }

  function renderEstimators(s) {
    const e = s.estimators, g = s.gamma;
    if (!e) { return; }
    const k = e.kappa, sg = e.sigma, dr = e.drift;
    fillTable("estimators", [
      ["κ", fmt(k.value, 0) + " per unit distance", [k.state, k.message]],
      ["κ interval", "[" + fmt(k.ci_low, 0) + ", " + fmt(k.ci_high, 0) + "]", "± " + fmt(k.std, 0) + " (std)"],
      ["A (fill intensity at the touch)", fmt(e.a_per_s, 3) + " /s"],
      ["σ clean / total", fmt(sg.clean_bps, 3) + " / " + fmt(sg.total_bps, 3) + " bps/√s", [sg.state, sg.message]],
      ["λ (trade arrivals)", fmt(e.lambda_per_s.value, 3) + " /s", e.lambda_per_s.state],
      ["drift", fmt(dr.bps_per_min, 3) + " ± " + fmt(dr.std_bps_per_min, 3) + " bps/min", dr.state],
      ["γ (base → used)", fmt(g.base, 3) + " → " + fmt(g.value, 3), g.bound_binding ? "bound binding" : "within bound"],
    ].map(function (r) {
      const last = r[2];
      return [r[0], r[1], Array.isArray(last) ? [last[0], last[1] || ""] : (last || "")];
    }));
    fillTable("gamma-parts", Object.keys(g.contributions).sort().map(function (name) {
      return [name.replace(/_/g, " "), fmt(g.features[name], 4), fmt(g.contributions[name], 4)];
    }));
  }

  function feedRows(f) { // a live connector's connection (absent for the simulator and replays)
    if (!f) { return []; }
    const age = f.message_age_s === null || f.message_age_s === undefined ? "no message yet" : "last message " + fmt(f.message_age_s, 1) + " s ago";
    const rows = [["feed " + f.source + " " + f.venue + ":" + f.symbol, f.state + " · " + age,
      (f.whole ? "book whole" : "book resynchronising: quotes pulled") + (f.last_error ? " · " + f.last_error : "")]];
    if (f.clock_offset_ms !== undefined) { // measured continuously by the connector; the clock-skew rule reads the offset
      const off = f.clock_offset_ms === null ? "not measured yet" : fmt(f.clock_offset_ms, 1) + " ms";
      const rtt = f.rtt_ms === null ? "not measured yet" : fmt(f.rtt_ms, 1) + " ms";
      rows.push(["feed clock offset (local − exchange) / round trip", off + " / " + rtt, "min-filtered, median over 30 s"]);
    }
    return rows;
  }

  function renderBook(s) {
    const m = s.market || {}, q = s.quotes || {};
    fillTable("book", [
      ["market bid × size", fmt(m.best_bid, 2) + " × " + fmt(m.bid_size, 4)],
      ["market ask × size", fmt(m.best_ask, 2) + " × " + fmt(m.ask_size, 4)],
      ["mid / microprice", fmt(m.mid, 2) + " / " + fmt(m.microprice, 2) + " quote ccy", m.microprice_state],
      ["spread: ours vs market", fmt(q.spread_bps, 2) + " vs " + fmt(q.market_spread_bps, 2) + " bps"],
    ].concat(feedRows(s.feed)).map(function (r) { return [r[0], r[1], r[2] || ""]; }));
    const rows = [];
    (q.asks || []).slice().reverse().concat(q.bids || []).forEach(function (o) {
      rows.push([o.side, fmt(o.px, 2), fmt(o.size, 4), fmt(o.remaining, 4), o.status, o.id]);
    });
    fillTable("open-orders", rows);
  }

  function renderFillsAndRisk(s) {
    fillTable("recent-fills", (s.fills || []).slice().reverse().slice(0, 20).map(function (f) {
      return [utc(f.ts_ns), f.side, fmt(f.px, 2), fmt(f.size, 4), fmt(f.fee, 6), f.liquidity];
    }));
    const risk = s.risk;
    if (!risk) { return; }
    const rows = risk.events.slice().reverse().map(function (r) {
      return [utc(r.ts_ns), r.rule, r.action, [r.message, JSON.stringify(r.values)]];
    });
    risk.pulls.slice().reverse().forEach(function (p) { rows.push([utc(p.ts_ns), "quotes pulled", "cancel all", p.reason]); });
    fillTable("risk-events", rows);
    const holding = risk.holding.map(function (h) { return h.source_words + ": " + h.words; });
    setText("pull-reasons", holding.length ? "Holding quotes back — " + holding.join(" · ") : "");
  }

  function renderStateTiles(st) { // a bare StrategyCore.state(): what a stored last_state holds
    const tiles = { "v-mid": ["mid", 2], "v-bid": ["bid_px", 2], "v-ask": ["ask_px", 2], "v-spread": ["spread_bps", 2],
      "v-kappa": ["kappa", 0], "v-sigma": ["sigma_bps", 3], "v-gamma": ["gamma", 3], "v-inventory": ["inventory", 4],
      "v-skew": ["skew_bps", 2], "v-pnl": ["pnl", 2] };
    Object.keys(tiles).forEach(function (id) { setText(id, fmt(st[tiles[id][0]], tiles[id][1])); });
    setText("v-fills", String(st.fills || 0));
    setText("v-open-orders", String(st.open_orders || 0));
  }

  function render(s) {
    if (s.partial) {
      renderStateTiles(s.state || {});
      const st = s.status;
      showStatus(st, st === "running" ? ((s.state && s.state.reasons) || []).join(", ") : reasonsLine(s));
      return;
    }
    remember(s);
    const st = (Date.now() < statusHeldUntil && heldStatus) ? heldStatus : s.status;
    showStatus(st, st === s.status ? reasonsLine(s) : undefined);
    renderTiles(s);
    renderPnl(s);
    renderWhy(s);
    renderEstimators(s);
    renderBook(s);
    renderFillsAndRisk(s);
    drawCharts();
    const n = s.counts ? s.counts.fills : 0;
    if (lastFills !== null && n !== lastFills && window.htmx) { htmx.trigger(document.body, "mm:fills"); }
    lastFills = n;
    lastSnapshotAt = Date.now();
    root.dataset.seq = String(s.seq);
    root.dataset.snapshots = String(Number(root.dataset.snapshots || "0") + 1);
  }

  // --- events: status, audit rows, parameter markers ----------------------------------------------
  function addMarker(ev) {
    if (markers.has(ev.id)) { return; }
    const d = ev.detail || {};
    const version = ev.version || d.version;
    const label = "params" + (version !== undefined ? " v" + version : "");
    const changes = ev.changes || d.changes || {};
    const title = Object.keys(changes).map(function (k) { return k + ": " + JSON.stringify(changes[k]); }).join(", ");
    markers.set(ev.id, { t: ev.ts_ns / 1e9, label: label, title: title });
    const li = document.createElement("li");
    li.textContent = utc(ev.ts_ns) + " UTC · " + label + " · " + (ev.actor || "") + (ev.reason ? " — " + ev.reason : "");
    li.title = title;
    li.dataset.version = version === undefined ? "" : String(version);
    document.getElementById("param-markers").appendChild(li);
    // redraw only a chart that has data: uPlot's axes cannot be drawn before a first range exists
    [priceChart, pnlChart].forEach(function (c) { if (c && c.data && c.data[0] && c.data[0].length > 1) { c.redraw(false); } });
  }

  function addAuditRow(ev) {
    const body = document.getElementById("audit-trail").tBodies[0];
    const empty = body.querySelector("tr.empty");
    if (empty) { empty.remove(); }
    const tr = document.createElement("tr");
    cell(tr, utc(ev.ts_ns).substring(0, 8));
    cell(tr, ev.actor || "");
    cell(tr, ev.action || "");
    cell(tr, ev.reason || "");
    tr.className = "fresh";
    body.insertBefore(tr, body.firstChild);
  }

  function onEvent(ev) {
    if (!ev || !ev.kind) { return; }
    if (ev.kind === "status") {
      heldStatus = ev.status;
      statusHeldUntil = Date.now() + 1500;
      showStatus(ev.status, ev.status === "running" ? undefined : (ev.status === "reducing" ? "reduce only: orders that would grow |inventory| are not sent" : "not quoting: session " + ev.status));
    } else if (ev.kind === "audit") {
      addAuditRow(ev);
      if ((ev.action || "").indexOf("params.") === 0) { addMarker(ev); }
    } else if (ev.kind === "params") {
      addMarker({ id: "p" + ev.version + "-" + ev.ts_ns, ts_ns: ev.ts_ns, version: ev.version, changes: ev.changes, actor: ev.actor, reason: ev.reason });
    }
  }

  // --- the socket -------------------------------------------------------------------------------
  let latest = null, scheduled = false, socket = null, retry = 0;

  function flush() {
    scheduled = false;
    const msg = latest;
    latest = null;
    if (!msg) { return; }
    try { render(msg.snapshot); } finally {
      // the ack tells the server this browser has room for the next snapshot (it coalesces until then)
      if (socket && socket.readyState === WebSocket.OPEN) { socket.send(JSON.stringify({ ack: msg.seq })); }
    }
  }

  function schedule() {
    if (scheduled) { return; }
    scheduled = true;
    // draw on the next frame; a hidden tab has no frames, so a timer stands in
    let done = false;
    const once = function () { if (!done) { done = true; flush(); } };
    requestAnimationFrame(once);
    setTimeout(once, 250);
  }

  function connect() {
    const proto = location.protocol === "https:" ? "wss://" : "ws://";
    socket = new WebSocket(proto + location.host + root.dataset.wsPath);
    socket.onopen = function () { retry = 0; root.dataset.connected = "1"; };
    socket.onmessage = function (e) {
      let msg;
      try { msg = JSON.parse(e.data); } catch (err) { return; }
      if (msg.type === "snapshot") { latest = msg; schedule(); } // latest wins
      else if (msg.event) { onEvent(msg.event); }
    };
    socket.onclose = function (e) {
      root.dataset.connected = "0";
      if (e.code >= 4400 && e.code < 4500) { setText("live-age", "live updates refused (" + e.code + ")"); return; }
      retry = Math.min(retry + 1, 6);
      setTimeout(connect, 500 * Math.pow(2, retry) * Math.random() + 250);
    };
  }

  function tickAge() {
    if (!lastSnapshotAt) { return; }
    const age = (Date.now() - lastSnapshotAt) / 1000;
    setText("live-age", age < 2 ? "live" : "last update " + age.toFixed(0) + " s ago");
  }

  document.getElementById("window-picker").addEventListener("click", function (e) {
    const b = e.target.closest("button[data-window]");
    if (!b) { return; }
    windowS = Number(b.dataset.window);
    this.querySelectorAll("button").forEach(function (x) { x.classList.toggle("active", x === b); });
    drawCharts();
  });

  function start() {
    makeCharts();
    const boot = document.getElementById("live-bootstrap");
    if (boot) {
      try { JSON.parse(boot.textContent).params.forEach(addMarker); } catch (err) { /* no markers */ }
    }
    connect();
    setInterval(tickAge, 1000);
  }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", start); } else { start(); }
})();
