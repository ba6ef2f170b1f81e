// The review page's analytics panel: fetches its four JSON endpoints and draws them with uPlot.
// A static file (the Content-Security-Policy allows scripts from 'self' only, and htmx runs no swapped-in script):
// the page that hosts the panel loads uPlot and this file; the panel is drawn when it appears (page load or an
// htmx swap). Text goes in with textContent only.
(function () {
  "use strict";

  const COLORS = { buy: "#1a7f37", sell: "#cf222e", all: "#57606a", ours: "#0969da", market: "#9a6700",
    exp: "#8250df", pow: "#bc4c00" };

  function fmt(v, digits) {
    if (v === null || v === undefined || typeof v !== "number" || !isFinite(v)) { return "—"; }
    if (v !== 0 && Math.abs(v) < Math.pow(10, -digits)) { return v.toExponential(2); }
    return v.toFixed(digits);
  }
  function part(root, role) { return root.querySelector('[data-role="' + role + '"]'); }
  function note(root, role, text, isError) {
    const el = part(root, role);
    if (!el) { return; }
    el.textContent = text;
    el.classList.toggle("error", !!isError);
  }
  function rowsInto(table, rows) {
    const body = table.tBodies[0] || table.appendChild(document.createElement("tbody"));
    const frag = document.createDocumentFragment();
    rows.forEach(function (r) {
      const tr = document.createElement("tr");
      r.forEach(function (c) { const td = document.createElement("td"); td.textContent = c; tr.appendChild(td); });
      frag.appendChild(tr);
    });
    body.replaceChildren(frag);
  }
  function width(el) { return Math.max(280, (el.clientWidth || (el.parentElement && el.parentElement.clientWidth) || 600) - 8); }
  function draw(el, opts, data) {
    if (!el || typeof uPlot === "undefined") { return null; }
    if (el._chart) { el._chart.destroy(); }
    el.replaceChildren();
    opts.width = width(el);
    opts.height = opts.height || 220;
    el._chart = new uPlot(opts, data, el);
    return el._chart;
  }
  function axis(label, extra) {
    return Object.assign({ label: label, stroke: "#8b949e", grid: { stroke: "rgba(139,148,158,0.2)" }, ticks: { stroke: "rgba(139,148,158,0.3)" } }, extra || {});
  }
  function utcTicks(u, splits) {
    return splits.map(function (v) { return v === null ? "" : new Date(v * 1e3).toISOString().substring(11, 19); });
  }
  function getJSON(url) {
    return fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" }).then(function (r) {
      return r.json().then(function (body) {
        if (!r.ok) { throw new Error(body.error || ("HTTP " + r.status)); }
        return body;
      });
    });
  }

  // --- markouts -------------------------------------------------------------------------------
  function markouts(root, d) {
    if (d.empty) { note(root, "markouts-note", d.message); return; }
    const select = part(root, "markout-measure");
    function render() {
      const m = select ? select.value : "vs_fill_bps";
      const unit = m.endsWith("_bps") ? "bps" : "quote ccy";
      const xs = d.horizons_s;
      const data = [xs];
      const series = [{ label: "horizon (s)" }];
      ["buy", "sell", "all"].forEach(function (side) {
        const rows = d.sides[side][m];
        data.push(rows.map(function (r) { return r.mean; }));
        series.push({ label: side + " mean (" + unit + ")", stroke: COLORS[side], width: 2, points: { show: true } });
        data.push(rows.map(function (r) { return r.ci_low; }));
        series.push({ label: side + " 95 % low", stroke: COLORS[side], dash: [4, 4], width: 1 });
        data.push(rows.map(function (r) { return r.ci_high; }));
        series.push({ label: side + " 95 % high", stroke: COLORS[side], dash: [4, 4], width: 1 });
      });
      draw(part(root, "markouts-chart"), {
        scales: { x: { time: false, distr: 3 } },
        axes: [axis("horizon after the fill (s)"), axis("markout (" + unit + ")", { size: 60 })],
        series: series,
      }, data);
      const rows = [];
      ["buy", "sell", "all"].forEach(function (side) {
        d.sides[side][m].forEach(function (r, i) {
          const digits = unit === "bps" ? 2 : 4;
          rows.push([side, xs[i] + " s", fmt(r.mean, digits) + " " + unit,
            "[" + fmt(r.ci_low, digits) + ", " + fmt(r.ci_high, digits) + "]", String(r.n)]);
        });
      });
      rowsInto(part(root, "markouts-table"), rows);
    }
    if (select && !select._bound) { select.addEventListener("change", render); select._bound = true; }
    render();
    let text = d.n_fills_total + " fills · mids from " + d.mid_source + ". Positive = the fill gained; " +
      "a fill whose mid at t+h is past the end of the data is left out of that horizon.";
    if (d.capped) { text += " Only the first " + d.cap + " fills are used."; }
    if (d.n_without_mid_before) { text += " " + d.n_without_mid_before + " fills had no mid before them."; }
    note(root, "markouts-note", text);
  }

  // --- fill rate ------------------------------------------------------------------------------
  function fillRate(root, d) {
    if (d.empty) { note(root, "fill-rate-note", d.message); return; }
    ["bid", "ask"].forEach(function (side) {
      const s = d.sides[side];
      const data = [s.center_bps, s.ours_per_s, s.ours_ci_low, s.ours_ci_high, s.public_per_s || s.center_bps.map(function () { return null; })];
      draw(part(root, "fill-rate-" + side + "-chart"), {
        height: 180,
        scales: { x: { time: false } },
        axes: [axis("our " + side + ": distance from the mid (bps)"), axis("fills per second", { size: 60 })],
        series: [
          { label: "distance (bps)" },
          { label: "ours (" + side + ")", stroke: COLORS.ours, width: 2, points: { show: true } },
          { label: "ours 95 % low", stroke: COLORS.ours, dash: [4, 4], width: 1 },
          { label: "ours 95 % high", stroke: COLORS.ours, dash: [4, 4], width: 1 },
          { label: "public trades at or through", stroke: COLORS.market, width: 2 },
        ],
      }, data);
    });
    let text = "Duration " + fmt(d.duration_s, 1) + " s; our quotes from the decisions (a fill counts for the quote " +
      "in force just before it). ";
    if (d.public.stored) {
      text += "Public: " + d.public.n_used + " of " + d.public.n_total + " trades" +
        (d.public.sample_1_in > 1 ? " (1 in " + d.public.sample_1_in + ", counts scaled)" : "") + ", mids from " + d.mid_source + ".";
    } else {
      text += d.public.message + ".";
    }
    if (d.fills_unattributed || d.fills_outside) {
      text += " Fills with no quote before them: " + d.fills_unattributed + "; outside the buckets: " + d.fills_outside + ".";
    }
    note(root, "fill-rate-note", text);
  }

  // --- spreads --------------------------------------------------------------------------------
  function spreads(root, d) {
    if (d.empty) { note(root, "spreads-note", d.message); return; }
    const s = d.series;
    draw(part(root, "spreads-chart"), {
      axes: [axis("time (UTC)", { values: utcTicks }), axis("spread (bps)", { size: 60 })],
      series: [
        { label: "time" },
        { label: "ours (mean)", stroke: COLORS.ours, width: 2 },
        { label: "market (mean)", stroke: COLORS.market, width: 2 },
      ],
    }, [s.t_s, s.ours_mean_bps, s.market_mean_bps]);
    const h = d.histogram;
    const bars = uPlot.paths && uPlot.paths.bars ? uPlot.paths.bars({ size: [0.45, 60] }) : undefined;
    draw(part(root, "spreads-hist-chart"), {
      height: 180,
      scales: { x: { time: false } },
      axes: [axis("spread (bps)"), axis("seconds", { size: 60 })],
      series: [
        { label: "spread (bps)" },
        { label: "ours (s)", stroke: COLORS.ours, fill: "rgba(9,105,218,0.3)", paths: bars },
        { label: "market (s)", stroke: COLORS.market, fill: "rgba(154,103,0,0.3)", paths: bars },
      ],
    }, [h.center_bps, h.ours.seconds, h.market.seconds]);
    rowsInto(part(root, "spreads-table"), ["ours", "market"].map(function (w) {
      const q = h[w].quantiles_bps;
      return [w, fmt(h[w].time_weighted_mean_bps, 3), fmt(q.p5, 3), fmt(q.p25, 3), fmt(q.p50, 3), fmt(q.p75, 3), fmt(q.p95, 3)];
    }));
    note(root, "spreads-note", d.n_decisions + " decisions in buckets of " + fmt(d.bucket_s, 3) +
      " s; the market's spread is the best bid/ask the engine saw at each decision; quantiles are time-weighted, read at bin centres.");
  }

  // --- κ --------------------------------------------------------------------------------------
  function kappa(root, d) {
    if (d.empty) { note(root, "kappa-note", d.message); return; }
    const h = d.histogram;
    const pos = function (a) { return a.map(function (v) { return v > 0 ? v : null; }); };
    draw(part(root, "kappa-chart"), {
      scales: { x: { time: false }, y: { distr: 3 } },
      axes: [axis("|price − mid| (bps)"), axis("density (per bp)", { size: 70 })],
      series: [
        { label: "distance (bps)" },
        { label: "trades", stroke: COLORS.all, points: { show: true, size: 5 }, width: 0 },
        { label: "exponential κ=" + fmt(d.exponential.kappa, 0), stroke: COLORS.exp, width: 2 },
        { label: "power law α=" + fmt(d.power_law.alpha, 2), stroke: COLORS.pow, width: 2 },
      ],
    }, [h.center_bps, pos(h.density_per_bp), pos(h.exp_pdf_per_bp), pos(h.powerlaw_pdf_per_bp)]);
    const e = d.exponential, p = d.power_law, c = d.comparison || {};
    rowsInto(part(root, "kappa-table"), [
      ["exponential κ (per unit fraction of mid)", fmt(e.kappa, 1) + " ± " + fmt(e.kappa_std, 1)],
      ["mean distance", fmt(e.mean_distance_bps, 3) + " bps"],
      ["K–S, exponential (whole sample)", fmt(e.ks_stat, 4) + " (p " + fmt(e.ks_p, 3) + ")"],
      ["power law α, x_min", fmt(p.alpha, 3) + ", " + fmt(p.x_min_bps, 3) + " bps (" + p.n_tail + " trades in the tail)"],
      ["K–S on the tail: exponential / power law", fmt(c.exp_tail_ks_stat, 4) + " / " + fmt(c.powerlaw_ks_stat, 4)],
      ["log-likelihood ratio exp − power (tail)", fmt(c.loglik_ratio, 2) + " (Vuong p " + fmt(c.vuong_p, 3) + ")"],
      ["preferred on the tail", c.preferred || "—"],
    ]);
    let text = d.n + " trades, mids from " + d.mid_source + ".";
    if (d.public.sample_1_in > 1) { text += " Sample 1 in " + d.public.sample_1_in + " of " + d.public.n_total + "."; }
    note(root, "kappa-note", text);
  }

  function init(root) {
    if (root._analytics) { return; }
    root._analytics = true;
    [["markoutsUrl", markouts, "markouts-note"], ["fillRateUrl", fillRate, "fill-rate-note"],
      ["spreadsUrl", spreads, "spreads-note"], ["kappaUrl", kappa, "kappa-note"]].forEach(function (job) {
      getJSON(root.dataset[job[0]]).then(function (d) { job[1](root, d); }).catch(function (err) {
        note(root, job[2], "could not load: " + err.message, true);
      });
    });
  }
  function scan(el) {
    const scope = el && el.querySelectorAll ? el : document;
    if (scope.matches && scope.matches(".review-analytics")) { init(scope); }
    scope.querySelectorAll(".review-analytics").forEach(init);
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", function () { scan(document); });
  } else {
    scan(document);
  }
  document.addEventListener("htmx:load", function (evt) { scan(evt.detail && evt.detail.elt); });
}());
