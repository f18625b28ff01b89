"""Style sheet and script of the results page (`harness.report`), inlined into report.html.

Plain CSS and hand-written vanilla JavaScript: no library, no network (system fonts only), so the page works
from disk, offline, in any current browser. The script reads the page's JSON (``<script id="report-data">``)
and drives the per-image browser: filter by type, sort by a column's PSNR gain over Input (worst first),
pages of rows, and a compare view with a before-after slider and a synchronised zoom over every column.
It sets ``data-ready="1"`` on ``<html>`` once the browser is drawn; the error trap in the page's head counts
script errors (``data-js-errors``) and images that fail to load (``data-broken-images``), which the browser
tests read.
"""

from __future__ import annotations

# Runs first (in <head>): count script errors and broken images where a headless test can read them.
ERROR_TRAP = """\
window.__reportErrors = [];
window.addEventListener("error", function (e) {
  var t = e.target, root = document.documentElement;
  if (t && t.tagName === "IMG") {
    root.setAttribute("data-broken-images", String(Number(root.getAttribute("data-broken-images") || 0) + 1));
    root.setAttribute("data-broken-src", t.getAttribute("src") || "");
    return;
  }
  window.__reportErrors.push(String(e.message || e));
  root.setAttribute("data-js-errors", String(window.__reportErrors.length));
}, true);
"""

CSS = """\
:root { --fg: #1d2327; --muted: #5f6b73; --line: #d8dee3; --bg: #ffffff; --panel: #f5f7f9; --accent: #1f77b4;
  --bad: #c0392b; --good: #1e8449; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", "Liberation Sans", sans-serif;
  color: var(--fg); background: var(--bg); }
header.top { padding: 18px 28px 10px; border-bottom: 1px solid var(--line); background: var(--panel); }
header.top h1 { margin: 0 0 4px; font-size: 22px; }
header.top .sub { color: var(--muted); }
nav { margin-top: 8px; display: flex; flex-wrap: wrap; gap: 6px 14px; }
nav a { color: var(--accent); text-decoration: none; }
nav a:hover { text-decoration: underline; }
main { padding: 8px 28px 40px; max-width: 1500px; }
section { margin: 22px 0 30px; }
h2 { font-size: 18px; border-bottom: 2px solid var(--line); padding-bottom: 4px; margin: 0 0 10px; }
h3 { font-size: 15px; margin: 18px 0 6px; }
p.note, .note { color: var(--muted); font-size: 12.5px; margin: 6px 0; }
.badge { display: inline-block; padding: 1px 7px; border-radius: 9px; font-size: 12px; background: #e8eef3;
  margin-right: 4px; }
.badge.warn { background: #fdecea; color: var(--bad); }
.scroll { overflow-x: auto; }
table.data { border-collapse: collapse; font-variant-numeric: tabular-nums; }
table.data th, table.data td { border-bottom: 1px solid var(--line); padding: 3px 8px; text-align: right;
  white-space: nowrap; }
table.data th:first-child, table.data td:first-child { text-align: left; }
table.data td.wrap { white-space: normal; text-align: left; min-width: 220px; }
table.data thead th { background: var(--panel); font-weight: 600; border-bottom: 2px solid #b9c2c9;
  text-align: center; }
table.data tr.avg td, table.data tr.avg th { border-top: 2px solid #b9c2c9; font-weight: 600; }
table.data td.in { color: var(--muted); }
.best { font-weight: 700; }
.second { text-decoration: underline; }
.neg { color: var(--bad); }
.pos { color: var(--good); }
svg.chart { width: 100%; max-width: 1150px; height: auto; display: block; }
svg.chart text { font-family: system-ui, -apple-system, "Segoe UI", "DejaVu Sans", sans-serif; }
.charts { display: grid; grid-template-columns: 1fr; gap: 8px; }
table.cm td { text-align: center; min-width: 38px; }
table.cm td.diag { outline: 2px solid #2c3e50; outline-offset: -2px; }
.cms { display: flex; flex-wrap: wrap; gap: 10px 36px; }
dl.prov { display: grid; grid-template-columns: max-content 1fr; gap: 3px 16px; margin: 0; }
dl.prov dt { color: var(--muted); }
dl.prov dd { margin: 0; word-break: break-all; }
code { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 12.5px; }
.controls { display: flex; flex-wrap: wrap; align-items: center; gap: 8px 14px; margin: 6px 0 10px; }
.controls select, .controls button { font: inherit; padding: 2px 6px; }
table.browser { border-collapse: collapse; }
table.browser th, table.browser td { border-bottom: 1px solid var(--line); padding: 4px; vertical-align: top;
  text-align: center; }
table.browser thead th { position: sticky; top: 0; background: var(--panel); z-index: 1; font-weight: 600; }
table.browser thead th.sortable { cursor: pointer; color: var(--accent); }
table.browser thead th.sorted::after { content: " \\25B2"; font-size: 10px; }
table.browser thead th.sorted.desc::after { content: " \\25BC"; }
table.browser th.rowhead { text-align: left; font-weight: 400; min-width: 120px; max-width: 190px;
  overflow-wrap: anywhere; }
table.browser th.rowhead .file { color: var(--muted); font-size: 12px; }
table.browser img { display: block; width: 168px; height: auto; cursor: zoom-in; image-rendering: auto;
  background: #eee; }
table.browser td.neg { background: #fdecea; }
table.browser .cap { font-size: 11.5px; color: var(--muted); font-variant-numeric: tabular-nums; }
table.browser .cap b { color: var(--fg); font-weight: 600; }
.noimg { width: 168px; height: 112px; display: flex; align-items: center; justify-content: center;
  background: #f0f0f0; color: #999; font-size: 12px; }
#compare { position: fixed; inset: 0; background: rgba(20, 24, 28, .82); z-index: 10; overflow: auto; }
#compare[hidden] { display: none; }
#compare .box { background: #fff; margin: 18px auto; max-width: 1400px; padding: 12px 16px 16px; border-radius: 6px; }
#compare .bar { display: flex; flex-wrap: wrap; gap: 8px 14px; align-items: center; margin-bottom: 8px; }
#compare .bar .title { font-weight: 600; margin-right: auto; }
#compare .bar button, #compare .bar select { font: inherit; padding: 2px 8px; }
.slider { position: relative; display: inline-block; user-select: none; touch-action: none; cursor: ew-resize;
  line-height: 0; max-width: 100%; }
.slider img { display: block; width: 800px; max-width: 100%; height: auto; image-rendering: pixelated; }
.slider img.over { position: absolute; left: 0; top: 0; }
.slider .handle { position: absolute; top: 0; bottom: 0; width: 2px; background: #fff; box-shadow: 0 0 3px #000;
  pointer-events: none; }
.slider .lab { position: absolute; top: 6px; padding: 2px 6px; background: rgba(0, 0, 0, .6); color: #fff;
  font-size: 12px; line-height: 1.3; pointer-events: none; }
.slider .lab.l { left: 6px; }
.slider .lab.r { right: 6px; }
.slider .zoombox { position: absolute; border: 1px solid #ffeb3b; box-shadow: 0 0 0 1px rgba(0, 0, 0, .5);
  pointer-events: none; }
.lenses { display: flex; flex-wrap: wrap; gap: 10px; margin-top: 10px; }
.lens { width: 200px; }
.lens .view { width: 200px; height: 200px; background-color: #eee; background-repeat: no-repeat;
  image-rendering: pixelated; cursor: crosshair; border: 1px solid var(--line); }
.lens .cap { font-size: 12px; text-align: center; }
"""

SCRIPT = r"""
(function () {
  "use strict";
  var root = document.documentElement;
  var dataEl = document.getElementById("report-data");
  if (!dataEl) { root.setAttribute("data-ready", "1"); return; }
  var D = JSON.parse(dataEl.textContent);
  var cols = D.cols, imgs = D.imgs, IN = D.input;
  var st = { type: "", sort: D.defaultSort, dir: 1, page: 0, per: D.perPage };
  var order = [];

  function esc(s) {
    return String(s).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }
  function num(v) { return v === "inf" ? Infinity : v === "-inf" ? -Infinity : v; }
  function ok(img, c) { var s = img.s[c]; return !!s && s[0] !== "failed"; }
  function psnr(img, c) { return ok(img, c) ? num(img.s[c][0]) : null; }
  function gain(img, c) {
    var a = psnr(img, c);
    if (a === null) return null;
    if (!D.gains) return a;
    var b = psnr(img, IN);
    return b === null ? null : a - b;
  }
  function fmt(v, d) {
    return v === Infinity ? "inf" : v === -Infinity ? "-inf" : v === null ? "\u2013" : v.toFixed(d);
  }
  function sgn(v, d) { return v === null ? "\u2013" : (v >= 0 ? "+" : "") + fmt(v, d); }
  function enc(p) { return p.split("/").map(encodeURIComponent).join("/"); }
  function src(c, i, full) {
    var col = cols[c], img = imgs[i];
    if (full && img.fu[c] === "1") {
      if (col.kind === "gt") return enc(D.fullDir + "/_gt/" + img.f);
      if (col.kind === "input") return enc(D.fullDir + "/_input/" + img.t + "/" + img.f);
      return enc("images/" + col.key + "/" + img.t + "/" + img.n);
    }
    if (img.th[c] !== "1") return "";
    if (col.kind === "gt") return enc(D.thumbDir + "/_gt/" + img.f + ".jpg");
    return enc(D.thumbDir + "/" + col.key + "/" + img.t + "/" + img.f + ".jpg");
  }
  function caption(img, c) {
    var col = cols[c], s = img.s[c];
    if (col.kind === "gt") return "ground truth";
    if (!s) return col.kind === "input" ? "degraded" : "not scored";
    if (s[0] === "failed") return '<span class="neg" title="' + esc(s[1] || "") + '">failed</span>';
    var t = "<b>" + fmt(num(s[0]), 2) + "</b> dB / " + fmt(num(s[1]), 4);
    if (col.kind === "method" && D.gains) {
      var g = gain(img, c);
      t += '<br><span class="' + (g < 0 ? "neg" : "pos") + '">\u0394 ' + sgn(g, 2) + " dB</span>";
    }
    if (s[2]) t += (col.kind === "method" && D.gains ? " \u00b7 " : "<br>") +
      '<span class="' + (s[2] === img.t ? "" : "neg") + '" title="predicted type">' + esc(D.short[s[2]] || s[2]) +
      "</span>";
    return t;
  }

  // ------------------------------------------------------------------ the browser table
  var tbody = document.querySelector("#browser tbody"), thead = document.querySelector("#browser thead");
  var typeSel = document.getElementById("f-type"), sortSel = document.getElementById("f-sort");
  var dirBtn = document.getElementById("f-dir"), info = document.getElementById("f-info");

  function computeOrder() {
    order = [];
    for (var i = 0; i < imgs.length; i++) if (!st.type || imgs[i].t === st.type) order.push(i);
    if (st.sort >= 0) {
      order.sort(function (x, y) {
        var a = gain(imgs[x], st.sort), b = gain(imgs[y], st.sort);
        if (a === null && b === null) return x - y;
        if (a === null) return 1;
        if (b === null) return -1;
        return a === b ? x - y : (a < b ? -st.dir : st.dir);
      });
    }
  }
  function drawHead() {
    var h = '<tr><th>Image</th>';
    cols.forEach(function (col, c) {
      var sortable = col.kind === "method";
      var cls = sortable ? "sortable" : "";
      if (st.sort === c) cls += " sorted" + (st.dir < 0 ? " desc" : "");
      h += '<th class="' + cls + '" data-c="' + c + '"' +
        (sortable ? ' title="sort by ' + esc(D.gainName) + ' (click again to reverse)"' : "") + ">" +
        esc(col.label) + "</th>";
    });
    thead.innerHTML = h + "</tr>";
  }
  function draw() {
    computeOrder();
    var pages = Math.max(1, Math.ceil(order.length / st.per));
    st.page = Math.min(Math.max(st.page, 0), pages - 1);
    var from = st.page * st.per, to = Math.min(order.length, from + st.per), h = "";
    for (var k = from; k < to; k++) {
      var i = order[k], img = imgs[i];
      h += '<tr class="img-row" data-i="' + i + '"><th class="rowhead">' + esc(D.typeLabel[img.t] || img.t) +
        '<br><span class="file">' + esc(img.f) + "</span></th>";
      for (var c = 0; c < cols.length; c++) {
        var s = src(c, i, false), g = cols[c].kind === "method" ? gain(img, c) : null;
        h += '<td class="' + (D.gains && g !== null && g < 0 ? "neg" : "") + '">' +
          (s ? '<img loading="lazy" src="' + s + '" alt="' + esc(cols[c].label + " " + img.f) + '" data-i="' + i +
            '" data-c="' + c + '">' : '<div class="noimg" data-i="' + i + '" data-c="' + c + '">no image</div>') +
          '<div class="cap">' + caption(img, c) + "</div></td>";
      }
      h += "</tr>";
    }
    tbody.innerHTML = h;
    drawHead();
    info.textContent = order.length ? "images " + (from + 1) + "\u2013" + to + " of " + order.length +
      " (page " + (st.page + 1) + " of " + pages + ")" : "no image";
    sortSel.value = String(st.sort);
    dirBtn.textContent = st.dir > 0 ? "worst first" : "best first";
    root.setAttribute("data-rows", String(to - from));
  }
  function setSort(c) {
    if (st.sort === c) st.dir = -st.dir; else { st.sort = c; st.dir = 1; }
    st.page = 0;
    draw();
  }
  thead.addEventListener("click", function (e) {
    var th = e.target.closest("th.sortable");
    if (th) setSort(Number(th.getAttribute("data-c")));
  });
  tbody.addEventListener("click", function (e) {
    var t = e.target.closest("[data-c]");
    if (t) openCompare(Number(t.getAttribute("data-i")), Number(t.getAttribute("data-c")));
  });
  typeSel.addEventListener("change", function () { st.type = typeSel.value; st.page = 0; draw(); });
  sortSel.addEventListener("change", function () { st.sort = Number(sortSel.value); st.dir = 1; st.page = 0; draw(); });
  dirBtn.addEventListener("click", function () { st.dir = -st.dir; st.page = 0; draw(); });
  document.getElementById("f-prev").addEventListener("click", function () { st.page--; draw(); });
  document.getElementById("f-next").addEventListener("click", function () { st.page++; draw(); });

  // ------------------------------------------------------------------ compare: slider + synchronised zoom
  var box = document.getElementById("compare");
  var cm = { i: 0, a: 0, b: 0, z: 4, fx: 0.5, fy: 0.5, pos: 50, drag: false, aspect: 1.5 };
  var sl = document.getElementById("c-slider"), imA = document.getElementById("c-a"),
    imB = document.getElementById("c-b"), handle = document.getElementById("c-handle"),
    zoombox = document.getElementById("c-zoombox"), selA = document.getElementById("c-sel-a"),
    selB = document.getElementById("c-sel-b"), lenses = document.getElementById("c-lenses"),
    zoomIn = document.getElementById("c-zoom"), title = document.getElementById("c-title");
  var withImage = function (i) {
    var out = [];
    for (var c = 0; c < cols.length; c++) if (src(c, i, true)) out.push(c);
    return out;
  };
  function options(sel, list, v) {
    sel.innerHTML = list.map(function (c) {
      return '<option value="' + c + '"' + (c === v ? " selected" : "") + ">" + esc(cols[c].label) + "</option>";
    }).join("");
  }
  function openCompare(i, c) {
    var have = withImage(i);
    if (!have.length) return;
    cm.i = i;
    var inp = have.indexOf(IN) >= 0 ? IN : have[0];
    if (c === undefined || have.indexOf(c) < 0 || c === inp) {
      c = st.sort >= 0 && have.indexOf(st.sort) >= 0 ? st.sort : have[Math.min(1, have.length - 1)];
    }
    cm.a = inp; cm.b = c;
    var gt = -1;
    for (var k = 0; k < cols.length; k++) if (cols[k].kind === "gt" && have.indexOf(k) >= 0) gt = k;
    if (cm.b === cm.a && gt >= 0) cm.b = gt;
    box.hidden = false;
    document.body.style.overflow = "hidden";
    drawCompare();
  }
  function closeCompare() { box.hidden = true; document.body.style.overflow = ""; }
  function drawCompare() {
    var img = imgs[cm.i], have = withImage(cm.i);
    title.textContent = (D.typeLabel[img.t] || img.t) + " \u00b7 " + img.f;
    options(selA, have, cm.a);
    options(selB, have, cm.b);
    imB.src = src(cm.b, cm.i, true);
    imA.src = src(cm.a, cm.i, true);
    document.getElementById("c-lab-a").textContent = cols[cm.a].label;
    document.getElementById("c-lab-b").textContent = cols[cm.b].label;
    lenses.innerHTML = have.map(function (c) {
      return '<div class="lens"><div class="view" data-c="' + c + '" style="background-image:url(&quot;' +
        src(c, cm.i, true) + '&quot;)"></div><div class="cap"><b>' + esc(cols[c].label) + "</b><br>" +
        caption(img, c) + "</div></div>";
    }).join("");
    imB.onload = function () {
      if (imB.naturalWidth) cm.aspect = imB.naturalWidth / imB.naturalHeight;
      drawSlider();
      drawZoom();
    };
    drawSlider();
    drawZoom();
  }
  function drawSlider() {
    imA.style.clipPath = "inset(0 " + (100 - cm.pos) + "% 0 0)";
    handle.style.left = cm.pos + "%";
  }
  function drawZoom() {
    var w = 200, h = Math.round(w / cm.aspect), z = cm.z, W = w * z, H = h * z;
    var ox = Math.min(0, Math.max(w - W, w / 2 - cm.fx * W)), oy = Math.min(0, Math.max(h - H, h / 2 - cm.fy * H));
    lenses.querySelectorAll(".view").forEach(function (v) {
      v.style.height = h + "px";
      v.style.backgroundSize = W + "px " + H + "px";
      v.style.backgroundPosition = ox + "px " + oy + "px";
    });
    zoombox.style.left = (-ox / W * 100) + "%";
    zoombox.style.top = (-oy / H * 100) + "%";
    zoombox.style.width = (100 / z) + "%";
    zoombox.style.height = (100 / z) + "%";
    zoomIn.value = String(z);
    document.getElementById("c-zoom-v").textContent = z + "\u00d7";
  }
  function focusFrom(e, el) {
    var r = el.getBoundingClientRect();
    return [Math.min(1, Math.max(0, (e.clientX - r.left) / r.width)),
      Math.min(1, Math.max(0, (e.clientY - r.top) / r.height))];
  }
  sl.addEventListener("pointerdown", function (e) {
    cm.drag = true;
    sl.setPointerCapture(e.pointerId);
    cm.pos = focusFrom(e, sl)[0] * 100;
    drawSlider();
  });
  sl.addEventListener("pointerup", function () { cm.drag = false; });
  sl.addEventListener("pointermove", function (e) {
    var f = focusFrom(e, sl);
    if (cm.drag) { cm.pos = f[0] * 100; drawSlider(); }
    cm.fx = f[0]; cm.fy = f[1];
    drawZoom();
  });
  lenses.addEventListener("pointermove", function (e) {
    var v = e.target.closest(".view");
    if (!v) return;
    var f = focusFrom(e, v);
    cm.fx = f[0]; cm.fy = f[1];
    drawZoom();
  });
  function wheel(e) {
    e.preventDefault();
    cm.z = Math.min(16, Math.max(1, e.deltaY < 0 ? cm.z * 2 : cm.z / 2));
    drawZoom();
  }
  sl.addEventListener("wheel", wheel, { passive: false });
  lenses.addEventListener("wheel", wheel, { passive: false });
  zoomIn.addEventListener("input", function () { cm.z = Number(zoomIn.value); drawZoom(); });
  selA.addEventListener("change", function () { cm.a = Number(selA.value); drawCompare(); });
  selB.addEventListener("change", function () { cm.b = Number(selB.value); drawCompare(); });
  function step(d) {
    var k = order.indexOf(cm.i);
    if (k < 0) return;
    k = Math.min(order.length - 1, Math.max(0, k + d));
    cm.i = order[k];
    var have = withImage(cm.i);
    if (have.indexOf(cm.a) < 0 || have.indexOf(cm.b) < 0) { openCompare(cm.i, cm.b); return; }
    drawCompare();
  }
  document.getElementById("c-prev").addEventListener("click", function () { step(-1); });
  document.getElementById("c-next").addEventListener("click", function () { step(1); });
  document.getElementById("c-close").addEventListener("click", closeCompare);
  box.addEventListener("click", function (e) { if (e.target === box) closeCompare(); });
  document.addEventListener("keydown", function (e) {
    if (box.hidden) return;
    if (e.key === "Escape") closeCompare();
    else if (e.key === "ArrowLeft") step(-1);
    else if (e.key === "ArrowRight") step(1);
  });

  draw();
  var m = /compare=(\d+)/.exec(location.hash);
  if (m && imgs[Number(m[1])]) openCompare(Number(m[1]));
  root.setAttribute("data-ready", "1");
})();
"""
