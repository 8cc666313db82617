/* thrifty dashboard: draws the charts (uPlot) and the request graph (Cytoscape.js) from the JSON the
   page embeds, and refreshes the overview from /ui/api/overview. Figures are formatted exactly as the
   server renders them (thrifty.ui.pages.usd/pct/ms). */
(function () {
  "use strict";
  var COLORS = ["#2448a8", "#a3211a", "#176b34", "#8a5a00", "#6b2fa3", "#00727a", "#b0306c", "#4a5568"];
  var fmt = {
    usd: function (v) {
      if (v === null || v === undefined) return "–";
      var text = Math.abs(v) >= 1 ? "$" + Math.abs(v).toFixed(2) : "$" + Math.abs(v).toFixed(6);
      return v < 0 && /[1-9]/.test(text) ? "-" + text : text;
    },
    pct: function (v) { return v === null || v === undefined ? "–" : (v * 100).toFixed(1) + "%"; },
    ms: function (v) { return v === null || v === undefined ? "–" : v.toFixed(0) + " ms"; },
    le_ms: function (v) { return v === null || v === undefined ? "–" : "≤ " + v.toFixed(0) + " ms"; },
    int: function (v) { return String(Math.round(v)); }
  };
  function readJSON(el) { return JSON.parse(el.textContent); }
  function secs(ts) { return ts.map(function (t) { return t; }); }

  function chart(el, title, t, series, opts) {
    if (!el || typeof uPlot === "undefined") return null;
    opts = opts || {};
    var width = Math.max(280, el.clientWidth - 8);
    var cfg = {
      width: width, height: opts.height || 230,
      tzDate: function (ts) { return uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC"); },
      scales: { x: { time: true } },
      legend: { live: false },
      series: [{}].concat(series.map(function (s, i) {
        return { label: s.label, stroke: s.color || COLORS[i % COLORS.length], width: 2, spanGaps: !!s.spanGaps,
                 fill: s.fill || undefined, scale: s.scale || "y", value: s.value || function (u, v) { return v === null ? "–" : v.toFixed(s.digits || 0); },
                 points: { show: t.length < 60 } };
      })),
      axes: [{ stroke: "#535a6b", grid: { stroke: "#e4e7ef" } },
             { stroke: "#535a6b", grid: { stroke: "#e4e7ef" }, size: opts.ySize || 60, values: opts.yValues }]
        .concat(opts.y2 ? [{ scale: "y2", side: 1, stroke: "#535a6b", grid: { show: false }, size: 50, values: opts.y2Values }] : [])
    };
    if (opts.scales) Object.assign(cfg.scales, opts.scales);
    var u = new uPlot(cfg, [secs(t)].concat(series.map(function (s) { return s.data; })), el);
    window.addEventListener("resize", function () { u.setSize({ width: Math.max(280, el.clientWidth - 8), height: cfg.height }); });
    return u;
  }

  function setFig(id, value, format) {
    var el = document.getElementById(id);
    if (!el) return;
    el.dataset.value = value === null || value === undefined ? "" : String(value);
    el.textContent = format(value);
  }

  function overviewCharts(doc) {
    var s = doc.series;
    return [
      chart(document.getElementById("chart-requests"), "Requests", doc.t,
            [{ label: "requests", data: s.requests }, { label: "errors", data: s.errors, color: COLORS[1] },
             { label: "escalated", data: s.escalated, color: COLORS[3] }, { label: "cache hits", data: s.cache_hits, color: COLORS[5] }]),
      chart(document.getElementById("chart-spend"), "Spend", doc.t,
            [{ label: "spend $", data: s.spend_usd, color: COLORS[3], digits: 6 }, { label: "saved $", data: s.saved_usd, color: COLORS[2], digits: 6 }],
            { ySize: 78, yValues: function (u, vals) { return vals.map(function (v) { return v === 0 ? "$0" : "$" + Number(v.toPrecision(2)); }); } })
    ];
  }

  function overview(docEl, query) {
    var doc = readJSON(docEl);
    var charts = overviewCharts(doc);
    var qs = new URLSearchParams(query || {}).toString();
    function refresh() {
      fetch("/ui/api/overview" + (qs ? "?" + qs : ""), { credentials: "same-origin", headers: { accept: "application/json" } })
        .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
        .then(function (d) {
          var t = d.totals;
          setFig("fig-requests", t.requests, fmt.int); setFig("fig-spend", t.spend_usd, fmt.usd);
          setFig("fig-saved", t.saved_usd, fmt.usd); setFig("fig-dearest", t.dearest_usd, fmt.usd);
          setFig("fig-cache", t.cache_hit_rate, fmt.pct); setFig("fig-escalation", t.escalation_rate, fmt.pct);
          setFig("fig-cache-hits", t.cache_hits, fmt.int); setFig("fig-cache-lookups", t.cache_lookups, fmt.int);
          setFig("fig-escalated", t.escalated, fmt.int); setFig("fig-answered", t.answered, fmt.int);
          setFig("fig-errors", t.errors, fmt.int);
          setFig("fig-p50", d.latency.p50_ms, fmt.le_ms); setFig("fig-p99", d.latency.p99_ms, fmt.le_ms);
          var s = d.series;
          if (charts[0]) charts[0].setData([d.t, s.requests, s.errors, s.escalated, s.cache_hits]);
          if (charts[1]) charts[1].setData([d.t, s.spend_usd, s.saved_usd]);
          var r = document.getElementById("refreshed");
          if (r) r.textContent = "Updated " + new Date().toISOString().slice(11, 19) + " UTC.";
        })
        .catch(function (e) { var r = document.getElementById("refreshed"); if (r) r.textContent = "Refresh failed: " + e.message; });
    }
    window.thriftyRefresh = refresh;
    setInterval(refresh, 15000);
  }

  function profile(docEl) {
    var doc = readJSON(docEl);
    var s = doc.series, models = Object.keys(s.by_model).sort();
    var series = models.map(function (m, i) {
      return { label: m + " share", color: COLORS[i % COLORS.length], spanGaps: true, digits: 2,
               data: s.by_model[m].map(function (n, b) { return s.answered[b] ? n / s.answered[b] : null; }) };
    });
    series.push({ label: "escalation rate", color: COLORS[3], spanGaps: true, digits: 2,
                  data: s.escalated.map(function (n, b) { return s.answered[b] ? n / s.answered[b] : null; }) });
    chart(document.getElementById("chart-shares"), "Shares", s.t, series,
          { scales: { y: { range: [0, 1] } }, yValues: function (u, vals) { return vals.map(function (v) { return Math.round(v * 100) + "%"; }); } });
    var art = doc.profile.artefact, el = document.getElementById("chart-front");
    if (art && art.front && art.front.length && el) {
      var pts = art.front.filter(function (p) { return p.cost !== null && p.quality !== null; }).sort(function (a, b) { return a.cost - b.cost; });
      new uPlot({ width: Math.max(260, el.clientWidth - 8), height: 200, legend: { live: false }, scales: { x: { time: false } },
                  series: [{ label: "cost" }, { label: "held-out quality", stroke: COLORS[0], width: 2 }],
                  axes: [{ stroke: "#535a6b" }, { stroke: "#535a6b" }] },
                [pts.map(function (p) { return p.cost; }), pts.map(function (p) { return p.quality; })], el);
    }
  }

  var KIND_COLORS = { request: "#5067a8", cache: "#00727a", shots: "#6b2fa3", "tier-accepted": "#176b34",
                      "tier-escalated": "#8a5a00", "tier-failed": "#a3211a", answer: "#176b34", error: "#a3211a",
                      audit: "#4a5568", verdict: "#b0306c" };

  function graph(docEl) {
    var g = readJSON(docEl);
    var byId = {};
    g.nodes.forEach(function (n) { byId[n.id] = n; });
    var title = document.getElementById("node-title"), text = document.getElementById("node-text");
    var buttons = Array.prototype.slice.call(document.querySelectorAll("#node-list button.node"));
    function show(id) {
      var n = byId[id];
      if (!n) return;
      title.textContent = n.label;
      text.textContent = n.text || "(no text)";
      buttons.forEach(function (b) { b.setAttribute("aria-pressed", b.dataset.node === id ? "true" : "false"); });
      if (window.thriftyCy) { window.thriftyCy.$("node").unselect(); window.thriftyCy.$id(id).select(); }
    }
    buttons.forEach(function (b) { b.setAttribute("aria-pressed", "false"); b.addEventListener("click", function () { show(b.dataset.node); }); });
    var el = document.getElementById("graph");
    if (typeof cytoscape !== "undefined" && el) {
      var cy = cytoscape({
        container: el, wheelSensitivity: 0.3, autoungrabify: true,
        elements: g.nodes.map(function (n) { return { data: { id: n.id, label: n.label, kind: n.kind } }; })
          .concat(g.edges.map(function (e) { return { data: { id: e.id, source: e.source, target: e.target, label: e.label } }; })),
        style: [
          { selector: "node", style: { shape: "round-rectangle", "background-color": "#fff", "border-width": 3,
              "border-color": function (n) { return KIND_COLORS[n.data("kind")] || "#4a5568"; }, label: "data(label)",
              "text-wrap": "wrap", "text-max-width": 210, "text-valign": "center", "font-size": 13, color: "#1b1d29",
              width: 230, height: 50, padding: 6 } },
          { selector: "node:selected", style: { "background-color": "#e8eeff", "border-color": "#2448a8", "border-width": 4 } },
          { selector: "edge", style: { width: 2, "line-color": "#8a91a3", "target-arrow-color": "#8a91a3", "target-arrow-shape": "triangle",
              "curve-style": "bezier", label: "data(label)", "font-size": 10, color: "#535a6b", "text-background-color": "#fbfcfe",
              "text-background-opacity": 1, "text-wrap": "wrap", "text-max-width": 180 } }
        ],
        maxZoom: 1.25, minZoom: 0.3,
        layout: { name: "breadthfirst", directed: true, roots: "#request", spacingFactor: 0.85, padding: 16 }
      });
      cy.on("tap", "node", function (evt) { show(evt.target.id()); });
      window.thriftyCy = cy;
    }
    var first = g.nodes.filter(function (n) { return n.kind === "answer" || n.kind === "error"; })[0] || g.nodes[0];
    if (first) show(first.id);
  }

  window.thriftyUI = { overview: overview, profile: profile, graph: graph, chart: chart, fmt: fmt, COLORS: COLORS };
})();
