/* Estimator histories: draws every [data-estimators-url] section (templates/review/partials/estimators.html)
 * from its JSON (review:estimators_json). Works on a full page and in an htmx slot (htmx:load), under the CSP: no
 * inline script, no eval. Values arrive in the engine's units; each series says its display unit and the factor.
 * Charts: the value, its interval as a shaded band, and the state as a coloured strip along the bottom.
 * Zoom (drag) applies to every chart and fetches the range again at full resolution for it; double-click resets. */
(function () {
  "use strict";

  const STATE_COLOURS = { ok: "#3ecf8e", warming: "#e0a030", stale: "#8a97a3", failed: "#ff5c5c" };
  const LINE_COLOURS = ["#4fb3ff", "#e6e6e6", "#b58cff", "#e0a030", "#3ecf8e", "#ff5c5c", "#f08fd0", "#9ad0c2"];
  const BAND_FILLS = ["rgba(79,179,255,0.18)", "rgba(230,230,230,0.12)"];
  const STRIP_PX = 6;

  const utcDate = function (ts) { return uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC"); };
  const utcTicks = function (u, splits) {
    return splits.map(function (v) { return v === null ? "" : new Date(v * 1e3).toISOString().substring(11, 19); });
  };
  const xSeries = function () {
    return { label: "time (UTC)", value: function (u, v) { return v === null ? "--" : new Date(v * 1e3).toISOString().replace("T", " ").substring(0, 23); } };
  };
  const fmt = function (u, v) { return v === null || v === undefined ? "--" : Number(v.toPrecision(5)).toString(); };

  function widthOf(el) { return Math.max(300, el.clientWidth || 420); }

  // align several (t, values) series on the union of their times
  function align(list) {
    const times = [];
    const seen = new Map();
    list.forEach(function (s) { s.t.forEach(function (t) { if (!seen.has(t)) { seen.set(t, true); times.push(t); } }); });
    times.sort(function (a, b) { return a - b; });
    const pos = new Map(times.map(function (t, i) { return [t, i]; }));
    return { times: times, pos: pos };
  }

  function stateStrip(stateOf) {
    return function (u) {
      const st = stateOf();
      if (!st || !st.t.length) { return; }
      const ctx = u.ctx;
      const y = u.bbox.top + u.bbox.height - STRIP_PX * devicePixelRatio;
      ctx.save();
      for (let i = 0; i < st.t.length; i++) {
        const x0 = u.valToPos(st.t[i], "x", true);
        const x1 = i + 1 < st.t.length ? u.valToPos(st.t[i + 1], "x", true) : u.bbox.left + u.bbox.width;
        const a = Math.max(x0, u.bbox.left), b = Math.min(x1, u.bbox.left + u.bbox.width);
        if (b <= a) { continue; }
        ctx.fillStyle = STATE_COLOURS[st.state[i]] || "#8a97a3";
        ctx.fillRect(a, y, b - a, STRIP_PX * devicePixelRatio);
      }
      ctx.restore();
    };
  }

  function Section(root) {
    this.root = root;
    this.url = root.dataset.estimatorsUrl;
    this.status = root.querySelector("#estimators-status");
    this.charts = [];
    this.syncKey = "est-" + (root.dataset.session || "0");
    this.zoomed = false;
  }

  Section.prototype.say = function (text) { if (this.status) { this.status.textContent = text; } };

  Section.prototype.load = function (startS, endS) {
    const self = this;
    let url = this.url;
    if (startS !== undefined) {
      url += "&start_ns=" + Math.floor(startS * 1e9) + "&end_ns=" + Math.ceil(endS * 1e9);
    }
    self.say("loading…");
    fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (r) {
        if (!r.ok) { return r.json().then(function (e) { throw new Error(e.error || r.statusText); }); }
        return r.json();
      })
      .then(function (data) { self.draw(data, startS, endS); })
      .catch(function (err) { self.say("could not load the estimator history: " + err.message); });
  };

  Section.prototype.draw = function (data, startS, endS) {
    const self = this;
    const byName = {};
    data.series.forEach(function (s) { byName[s.name] = s; });
    let shown = 0, rows = 0;
    data.series.forEach(function (s) { shown = Math.max(shown, s.t.length); rows = Math.max(rows, s.rows); });
    if (!data.series.length) { self.say("no estimator snapshots in this range"); }
    else {
      self.say(shown + " points per series at most (cap " + data.points_max + ")" +
        (data.downsampled ? ", averaged in the database over " + data.bucket_s.toPrecision(3) + " s buckets" : ", every recorded snapshot") +
        ", from " + rows + " snapshots per series" + (startS !== undefined ? " in the zoomed range" : ""));
    }
    this.root.querySelectorAll(".est-chart").forEach(function (fig) {
      const plot = fig.querySelector(".est-plot");
      if (fig.dataset.contributions) { self.drawContributions(fig, plot, data.gamma_contributions, startS, endS); return; }
      const list = fig.dataset.series.split(" ").map(function (n) { return byName[n]; }).filter(Boolean);
      self.drawPanel(fig, plot, list, startS, endS);
    });
  };

  Section.prototype.options = function (plot, yLabel, series, draw) {
    const self = this;
    return {
      width: widthOf(plot), height: 220, tzDate: utcDate,
      scales: { x: { time: true } },
      cursor: { sync: { key: self.syncKey, setSeries: false }, drag: { x: true, y: false } },
      axes: [
        { stroke: "#8a97a3", grid: { stroke: "#263340" }, label: "time (UTC)", values: utcTicks, space: 70 },
        { stroke: "#8a97a3", grid: { stroke: "#263340" }, label: yLabel, size: 70 },
      ],
      series: series,
      hooks: {
        draw: draw ? [draw] : [],
        setSelect: [function (u) {
          if (u.select.width < 5) { return; }
          const a = u.posToVal(u.select.left, "x"), b = u.posToVal(u.select.left + u.select.width, "x");
          u.setSelect({ left: 0, width: 0 }, false);
          self.zoomed = true;
          self.load(a, b);
        }],
        ready: [function (u) {
          u.over.addEventListener("dblclick", function () { if (self.zoomed) { self.zoomed = false; self.load(); } });
        }],
      },
    };
  };

  Section.prototype.mount = function (fig, plot, opts, cols) {
    const old = this.charts.find(function (c) { return c.fig === fig; });
    if (old) { old.u.destroy(); this.charts.splice(this.charts.indexOf(old), 1); }
    opts.scales.x = { time: true, auto: true };
    const u = new uPlot(opts, cols, plot);
    this.charts.push({ fig: fig, u: u });
    return u;
  };

  Section.prototype.drawPanel = function (fig, plot, list, startS, endS) {
    if (!list.length) { plot.textContent = "not recorded"; return; }
    plot.textContent = "";
    const al = align(list);
    const n = al.times.length;
    const cols = [al.times];
    const series = [xSeries()];
    const bands = [];
    list.forEach(function (s, k) {
      const v = new Array(n).fill(null), lo = new Array(n).fill(null), hi = new Array(n).fill(null);
      s.t.forEach(function (t, i) {
        const j = al.pos.get(t);
        v[j] = s.value[i] === null ? null : s.value[i] * s.scale;
        lo[j] = s.lo[i] === null ? null : s.lo[i] * s.scale;
        hi[j] = s.hi[i] === null ? null : s.hi[i] * s.scale;
      });
      const colour = LINE_COLOURS[k % LINE_COLOURS.length];
      const band = s.band === "sd" ? "±1 sd" : "interval";
      const base = cols.length;
      cols.push(v);
      series.push({ label: s.label, stroke: colour, width: 1.5, spanGaps: false, value: fmt });
      if (s.band) {
        cols.push(lo, hi);
        series.push({ label: s.name + " " + band + " low", stroke: "transparent", width: 0, value: fmt, spanGaps: false });
        series.push({ label: s.name + " " + band + " high", stroke: "transparent", width: 0, value: fmt, spanGaps: false });
        bands.push({ series: [base + 2, base + 1], fill: BAND_FILLS[k % BAND_FILLS.length] });
      }
    });
    const first = list[0];
    const strip = stateStrip(function () { return first; });
    const opts = this.options(plot, first.unit, series, strip);
    opts.bands = bands;
    const u = this.mount(fig, plot, opts, cols);
    if (startS !== undefined) { u.setScale("x", { min: startS, max: endS }); }
    fig.dataset.points = String(n);
  };

  Section.prototype.drawContributions = function (fig, plot, gc, startS, endS) {
    const names = Object.keys(gc.series || {});
    if (!names.length) { plot.textContent = "not recorded"; return; }
    plot.textContent = "";
    const cols = [gc.t];
    const series = [xSeries()];
    names.forEach(function (name, k) {
      cols.push(gc.series[name]);
      series.push({ label: name.replace(/_/g, " "), stroke: LINE_COLOURS[k % LINE_COLOURS.length], width: 1.2, spanGaps: false, value: fmt });
    });
    const u = this.mount(fig, plot, this.options(plot, gc.unit, series, null), cols);
    if (startS !== undefined) { u.setScale("x", { min: startS, max: endS }); }
    fig.dataset.points = String(gc.t.length);
  };

  function scan(el) {
    if (!el || typeof uPlot === "undefined") { return; }
    const found = [];
    if (el.matches && el.matches("[data-estimators-url]")) { found.push(el); }
    if (el.querySelectorAll) { el.querySelectorAll("[data-estimators-url]").forEach(function (x) { found.push(x); }); }
    found.forEach(function (root) {
      if (root.dataset.estimatorsReady) { return; }
      root.dataset.estimatorsReady = "1";
      const s = new Section(root);
      root.estimatorsSection = s;
      s.load();
    });
  }

  document.addEventListener("DOMContentLoaded", function () { scan(document); });
  document.addEventListener("htmx:load", function (e) { scan(e.detail && e.detail.elt); });
  window.addEventListener("resize", function () {
    document.querySelectorAll("[data-estimators-url]").forEach(function (root) {
      const s = root.estimatorsSection;
      if (!s) { return; }
      s.charts.forEach(function (c) { c.u.setSize({ width: widthOf(c.fig.querySelector(".est-plot")), height: 220 }); });
    });
  });
})();
