/* Lab: finds every curve in a thrifty eval metrics.json or thrifty simulate JSON — any list of objects
   with numeric fields (curve, points, baselines.hull, baselines.oracle …) and single points (best single
   model, random) — and draws the chosen pair of fields with uPlot. Uploaded files stay in the browser. */
(function () {
  "use strict";
  var status = document.getElementById("lab-status"), xSel = document.getElementById("lab-x"), ySel = document.getElementById("lab-y");
  var chartEl = document.getElementById("chart-lab"), legend = document.getElementById("lab-series");
  var found = [], plot = null;

  function numericKeys(o) { return Object.keys(o).filter(function (k) { return typeof o[k] === "number" && isFinite(o[k]); }); }

  function walk(v, path, depth, out) {
    if (depth > 6 || v === null || typeof v !== "object") return;
    if (Array.isArray(v)) {
      var objs = v.filter(function (e) { return e && typeof e === "object" && !Array.isArray(e); });
      if (objs.length && objs.length === v.length && numericKeys(objs[0]).length >= 2) {
        out.push({ name: path || "(root)", rows: objs });
        return;
      }
      v.forEach(function (e, i) { walk(e, path + "[" + i + "]", depth + 1, out); });
      return;
    }
    var keys = numericKeys(v);
    if (keys.length >= 2 && keys.indexOf("cost") >= 0 && path) out.push({ name: path, rows: [v] });
    Object.keys(v).forEach(function (k) { walk(v[k], path ? path + "." + k : k, depth + 1, out); });
  }

  function fields() {
    var all = {};
    found.forEach(function (s) { s.rows.forEach(function (r) { numericKeys(r).forEach(function (k) { all[k] = (all[k] || 0) + 1; }); }); });
    return Object.keys(all).sort(function (a, b) { return all[b] - all[a]; });
  }

  function pick(sel, names, preferred) {
    sel.innerHTML = "";
    names.forEach(function (n) { var o = document.createElement("option"); o.value = o.textContent = n; sel.appendChild(o); });
    for (var i = 0; i < preferred.length; i++) { if (names.indexOf(preferred[i]) >= 0) { sel.value = preferred[i]; return; } }
  }

  function draw() {
    var xk = xSel.value, yk = ySel.value;
    var series = found.map(function (s) {
      return s.rows.filter(function (r) { return typeof r[xk] === "number" && typeof r[yk] === "number"; })
        .map(function (r) { return [r[xk], r[yk]]; }).sort(function (a, b) { return a[0] - b[0]; });
    });
    var names = found.map(function (s) { return s.name; }).filter(function (_, i) { return series[i].length; });
    series = series.filter(function (s) { return s.length; });
    var xs = Array.from(new Set([].concat.apply([], series.map(function (s) { return s.map(function (p) { return p[0]; }); })))).sort(function (a, b) { return a - b; });
    var data = [xs].concat(series.map(function (s) {
      var m = new Map(s.map(function (p) { return [p[0], p[1]]; }));
      return xs.map(function (x) { return m.has(x) ? m.get(x) : null; });
    }));
    if (plot) { plot.destroy(); plot = null; }
    legend.innerHTML = "";
    if (!xs.length) { status.textContent = "No points with numeric " + xk + " and " + yk + "."; return; }
    var C = window.thriftyUI.COLORS;
    plot = new uPlot({
      width: Math.max(300, chartEl.clientWidth - 8), height: 360, legend: { live: false }, scales: { x: { time: false } },
      series: [{ label: xk }].concat(names.map(function (n, i) {
        return { label: n, stroke: C[i % C.length], width: 2, spanGaps: true, points: { show: true, size: 6 } };
      })),
      axes: [{ label: xk, stroke: "#535a6b", grid: { stroke: "#e4e7ef" } }, { label: yk, stroke: "#535a6b", grid: { stroke: "#e4e7ef" } }]
    }, data, chartEl);
    names.forEach(function (n, i) { var li = document.createElement("li"); li.textContent = n + ": " + series[i].length + " points"; legend.appendChild(li); });
    status.textContent = names.length + " curves, " + xs.length + " distinct " + xk + " values.";
    chartEl.dataset.curves = String(names.length);
  }

  function load(doc, label) {
    found = [];
    walk(doc, "", 0, found);
    if (!found.length) { status.textContent = label + ": no curve found (lists of objects with numeric fields)."; return; }
    var names = fields();
    pick(xSel, names, ["cost", "mean_cost", "spend_usd", "train_cost"]);
    pick(ySel, names, ["quality", "mean_quality", "accuracy", "train_quality"]);
    draw();
    status.textContent = label + ": " + status.textContent;
  }

  xSel.addEventListener("change", draw);
  ySel.addEventListener("change", draw);
  var fileSel = document.getElementById("lab-file");
  if (fileSel) fileSel.addEventListener("change", function () {
    if (!fileSel.value) return;
    fetch("/ui/api/lab?file=" + encodeURIComponent(fileSel.value), { credentials: "same-origin" })
      .then(function (r) { return r.json().then(function (j) { if (!r.ok) throw new Error(j.error ? j.error.message : "HTTP " + r.status); return j; }); })
      .then(function (j) { load(j.content, j.name); })
      .catch(function (e) { status.textContent = "Cannot read " + fileSel.value + ": " + e.message; });
  });
  document.getElementById("lab-upload").addEventListener("change", function (ev) {
    var f = ev.target.files[0];
    if (!f) return;
    f.text().then(function (t) { load(JSON.parse(t), f.name); }).catch(function (e) { status.textContent = "Cannot read " + f.name + ": " + e.message; });
  });
  window.thriftyLab = { load: load };
})();
