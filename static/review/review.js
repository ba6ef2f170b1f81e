// The session review page and the comparison page: chart data fetched from series.json at screen resolution
// (the server downsamples in the database), drawn with uPlot in UTC. Drag to zoom (refetches the range at full
// resolution), double-click to zoom out, click for the decision in force then (an htmx partial).
(function () {
  "use strict";
  const PARTS = ["spread_capture", "adverse_selection", "inventory", "fees", "funding"];
  const COLORS = ["#3ecf8e", "#ff5c5c", "#4fb3ff", "#e0a030", "#b58cff"];
  const utcDate = function (ts) { return uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC"); };
  const utcTicks = function (u, splits) {
    return splits.map(function (v) { return v === null ? "" : new Date(v * 1e3).toISOString().substring(11, 19); });
  };
  const elapsedTicks = function (u, splits) { return splits.map(function (v) { return v === null ? "" : v.toFixed(0) + " s"; }); };
  const xLegend = { label: "time (UTC)", value: function (u, v) { return v === null ? "--" : new Date(v * 1e3).toISOString().replace("T", " ").substring(0, 23); } };
  const dots = function (c, size) { return { show: true, size: size || 7, stroke: c, fill: c }; };
  const noPath = function () { return null; };
  function axes(yLabel, elapsed) {
    return [
      { stroke: "#8a97a3", grid: { stroke: "#263340" }, label: elapsed ? "elapsed since start (s)" : "time (UTC)", values: elapsed ? elapsedTicks : utcTicks, space: 80 },
      { stroke: "#8a97a3", grid: { stroke: "#263340" }, label: yLabel, size: 80 },
    ];
  }
  function width(el) { return Math.max(300, el.clientWidth || 600); }

  // several (t, values) series on one sorted x axis; null where a series has no point
  function join(parts) {
    const xs = new Set();
    parts.forEach(function (p) { p.t.forEach(function (t) { xs.add(t); }); });
    const x = Array.from(xs).sort(function (a, b) { return a - b; });
    const at = new Map(x.map(function (t, i) { return [t, i]; }));
    const out = [x];
    parts.forEach(function (p) {
      p.cols.forEach(function (col) {
        const arr = new Array(x.length).fill(null);
        p.t.forEach(function (t, i) { if (col[i] !== undefined && col[i] !== null) { arr[at.get(t)] = col[i]; } });
        out.push(arr);
      });
    });
    return out;
  }

  function markerHook(getMarkers) {
    return function (u) {
      const ctx = u.ctx, top = u.bbox.top, h = u.bbox.height;
      ctx.save();
      ctx.setLineDash([4, 4]);
      ctx.font = (11 * devicePixelRatio) + "px sans-serif";
      getMarkers().forEach(function (mk) {
        const x = u.valToPos(mk.t, "x", true);
        if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) { return; }
        ctx.strokeStyle = ctx.fillStyle = mk.kind === "risk" ? "#ff5c5c" : "#e0a030";
        ctx.beginPath(); ctx.moveTo(x, top); ctx.lineTo(x, top + h); ctx.stroke();
        ctx.fillText(mk.kind === "risk" ? mk.label : (mk.label + " v" + (mk.detail.version || "")), x + 3, top + 12 * devicePixelRatio);
      });
      ctx.restore();
    };
  }

  function fetchSeries(url, from, to, points) {
    const q = new URLSearchParams({ from: String(from), to: String(to), points: String(points) });
    return fetch(url + "?" + q.toString(), { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (r) { if (!r.ok) { throw new Error("series.json answered " + r.status); } return r.json(); });
  }

  // ------------------------------------------------------------------ the review page
  function reviewPage(root) {
    const url = root.dataset.seriesUrl, decisionUrl = root.dataset.decisionUrl;
    const points = parseInt(root.dataset.points, 10);
    const full = [root.dataset.from, root.dataset.to];
    let markers = [];
    let charts = [];
    let syncing = false;

    function onSelect(u) { // drag: zoom every chart to the selected range, refetched at full resolution
      if (syncing || u.select.width < 3) { return; }
      const a = u.posToVal(u.select.left, "x"), b = u.posToVal(u.select.left + u.select.width, "x");
      load(BigInt(Math.floor(a * 1e6)) * 1000n, BigInt(Math.ceil(b * 1e6)) * 1000n);
    }
    function onClick(u) {
      return function () {
        if (u.cursor.left === undefined || u.cursor.left < 0 || u.select.width > 2) { return; }
        const t = u.posToVal(u.cursor.left, "x");
        const at = BigInt(Math.floor(t * 1e6)) * 1000n + 999n;
        if (window.htmx) { window.htmx.ajax("GET", decisionUrl + "?at=" + at.toString(), { target: "#decision-panel", swap: "innerHTML" }); }
      };
    }
    function make(el, opts, data) {
      opts.width = width(el); opts.tzDate = utcDate; opts.scales = { x: { time: true } };
      opts.cursor = { drag: { x: true, y: false, setScale: false }, sync: { key: "review" } };
      opts.hooks = Object.assign({ setSelect: [onSelect] }, opts.hooks || {});
      const u = new uPlot(opts, data, el);
      u.over.addEventListener("click", onClick(u));
      u.over.addEventListener("dblclick", function () { load(full[0], full[1]); });
      return u;
    }
    function draw(d) {
      markers = d.markers;
      charts.forEach(function (c) { c.destroy(); }); charts = [];
      const q = d.quotes, f = d.fills, p = d.pnl;
      const res = document.getElementById("review-resolution");
      res.textContent = q.mode === "raw"
        ? q.t.length + " decisions, every one (raw events) · " + f.t.length + " fills · db " + d.db_mode
        : q.t.length + " points of " + (d.bucket_s >= 1 ? d.bucket_s.toFixed(1) + " s" : (d.bucket_s * 1000).toFixed(1) + " ms")
          + " buckets (mid band = min–max per bucket, lines = last decision of each) · fills " + f.mode + " · db " + d.db_mode;
      const buys = { t: [], cols: [[]] }, sells = { t: [], cols: [[]] };
      f.t.forEach(function (t, i) { const s = f.side[i] > 0 ? buys : sells; s.t.push(t); s.cols[0].push(f.price[i]); });
      const priceData = join([{ t: q.t, cols: [q.mid, q.mid_lo, q.mid_hi, q.bid, q.ask] }, buys, sells]);
      charts.push(make(document.getElementById("review-price"), {
        height: 320, axes: axes("price (quote ccy)"),
        series: [xLegend,
          { label: "mid", stroke: "#e6e6e6", width: 1, spanGaps: true },
          { label: "mid min", stroke: "#55606b", width: 1, spanGaps: true },
          { label: "mid max", stroke: "#55606b", width: 1, spanGaps: true },
          { label: "our bid", stroke: "#3ecf8e", width: 1, spanGaps: true },
          { label: "our ask", stroke: "#ff5c5c", width: 1, spanGaps: true },
          { label: "our buys ▲", stroke: "#3ecf8e", paths: noPath, points: dots("#3ecf8e") },
          { label: "our sells ▼", stroke: "#ff5c5c", paths: noPath, points: dots("#ff5c5c") }],
        hooks: { draw: [markerHook(function () { return markers; })] },
      }, priceData));
      const inv = p.position ? p : { t: [], position: [] };
      charts.push(make(document.getElementById("review-inventory"), {
        height: 200, axes: axes("base units"),
        series: [xLegend, { label: "position", stroke: "#4fb3ff", width: 1.5, spanGaps: true }],
        hooks: { draw: [markerHook(function () { return markers; })] },
      }, [inv.t, inv.position]));
      const pnlSeries = [xLegend], pnlCols = [];
      if (p.source === "recorded") {
        PARTS.forEach(function (n, i) { pnlSeries.push({ label: n.replace("_", " "), stroke: COLORS[i], width: 1.5, spanGaps: true }); pnlCols.push(p[n]); });
      }
      pnlSeries.push({ label: "total", stroke: "#e6e6e6", width: 2, spanGaps: true }); pnlCols.push(p.total || []);
      charts.push(make(document.getElementById("review-pnl"), { height: 200, axes: axes("quote ccy"), series: pnlSeries }, [p.t].concat(pnlCols)));
      document.getElementById("review-pnl-note").textContent = p.note || "";
    }
    function load(from, to) {
      fetchSeries(url, from, to, points).then(draw).catch(function (e) {
        document.getElementById("review-resolution").textContent = "could not load the chart data: " + e.message;
      });
    }
    load(full[0], full[1]);
  }

  // ------------------------------------------------------------------ the comparison page
  function comparePage(root) {
    const elapsed = root.dataset.alignment === "elapsed";
    const points = parseInt(root.dataset.points, 10);
    const a = root.dataset, shift = function (d, from) { const s = elapsed ? Number(BigInt(from) / 1000n) / 1e6 : 0; return function (t) { return t - s; }; };
    Promise.all([
      fetchSeries(a.aUrl, a.aFrom, a.aTo, points),
      fetchSeries(a.bUrl, a.bFrom, a.bTo, points),
    ]).then(function (res) {
      const A = res[0], B = res[1], sa = shift(A, a.aFrom), sb = shift(B, a.bFrom);
      const opts = function (h, y) {
        return { width: width(document.getElementById("compare-price")), height: h, axes: axes(y, elapsed), scales: { x: { time: !elapsed } }, tzDate: utcDate };
      };
      const price = join([
        { t: A.quotes.t.map(sa), cols: [A.quotes.mid, A.quotes.bid, A.quotes.ask] },
        { t: B.quotes.t.map(sb), cols: [B.quotes.mid, B.quotes.bid, B.quotes.ask] }]);
      const po = opts(300, "price (quote ccy)");
      po.series = [elapsed ? { label: "elapsed (s)" } : xLegend,
        { label: "A mid", stroke: "#e6e6e6", spanGaps: true }, { label: "A bid", stroke: "#3ecf8e", spanGaps: true }, { label: "A ask", stroke: "#ff5c5c", spanGaps: true },
        { label: "B mid", stroke: "#b0b0b0", dash: [5, 4], spanGaps: true }, { label: "B bid", stroke: "#2a9d6a", dash: [5, 4], spanGaps: true }, { label: "B ask", stroke: "#c04444", dash: [5, 4], spanGaps: true }];
      new uPlot(po, price, document.getElementById("compare-price"));
      const pnl = join([
        { t: A.pnl.t.map(sa), cols: [A.pnl.total || [], A.pnl.position || []] },
        { t: B.pnl.t.map(sb), cols: [B.pnl.total || [], B.pnl.position || []] }]);
      const pp = opts(240, "quote ccy / base units");
      pp.series = [elapsed ? { label: "elapsed (s)" } : xLegend,
        { label: "A total P&L", stroke: "#4fb3ff", spanGaps: true }, { label: "A position", stroke: "#4fb3ff", dash: [2, 3], spanGaps: true },
        { label: "B total P&L", stroke: "#e0a030", spanGaps: true }, { label: "B position", stroke: "#e0a030", dash: [2, 3], spanGaps: true }];
      new uPlot(pp, pnl, document.getElementById("compare-pnl"));
    });
  }

  function start() {
    if (typeof uPlot === "undefined") { return; }
    const r = document.getElementById("review-root");
    if (r) { reviewPage(r); }
    const c = document.getElementById("compare-root");
    if (c) { comparePage(c); }
  }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", start); } else { start(); }
}());
