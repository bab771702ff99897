/* traceaudit HTML report: the script inlined into the page (allowed by its hash in the CSP).
 *
 * The page reads without it; this only enhances what the server rendered:
 *  - the conflicts table: filters (verdict, holder, process, path text) and sorting by
 *    time or hold time, from the JSON block #conflict-data;
 *  - each timeline: zoom (wheel, buttons), pan (drag, buttons), reset, and a tooltip on
 *    hover and keyboard focus made from each bar's <title>;
 *  - the code snippets: one tab per language inside a closed <details>;
 *  - printing: every <details> open while printing.
 * No eval, no network, no framework.
 */
(function () {
  "use strict";

  document.documentElement.classList.add("js");

  var NF = new Intl.NumberFormat("en-US");

  // ------------------------------------------------------------------ conflicts table

  function conflicts() {
    var block = document.getElementById("conflict-data");
    var table = document.getElementById("conflicts-table");
    var form = document.getElementById("conflict-filters");
    if (!block || !table || !form) return;
    var data = JSON.parse(block.textContent);
    var tbody = table.tBodies[0];
    var rows = {};
    data.conflicts.forEach(function (c) { rows[c.id] = document.getElementById(c.id); });
    var count = document.getElementById("conflict-count");
    form.hidden = false;

    function pick(list, value) { return value === "" ? null : list[Number(value)]; }

    function apply() {
      var el = form.elements;
      var verdict = pick(data.verdicts, el.verdict.value);
      var holder = el.holder.value;
      var process = pick(data.processes, el.process.value);
      var text = el.path.value.trim().toLowerCase();
      var shown = 0;
      data.conflicts.forEach(function (c) {
        var ok = (verdict === null || c.verdict === verdict) &&
          (process === null || c.process === process) &&
          (holder === "" || (holder === "none" ? c.holders.length === 0
            : c.holders.indexOf(data.holders[Number(holder)]) >= 0)) &&
          (text === "" || c.path.toLowerCase().indexOf(text) >= 0);
        rows[c.id].classList.toggle("filtered-out", !ok);
        if (ok) shown += 1;
      });
      var listed = data.conflicts.length;
      count.textContent = "showing " + NF.format(shown) + " of " + NF.format(listed) +
        (data.total > listed ? " (" + NF.format(data.total) + " in the trace)" : "");
    }
    form.addEventListener("input", apply);
    form.addEventListener("change", apply);
    form.addEventListener("reset", function () { window.setTimeout(apply, 0); });
    form.addEventListener("submit", function (e) { e.preventDefault(); });

    // sorting: time (the order the rows were rendered in) or hold time
    var state = { key: "order", dir: 1 };
    function value(c, key) {
      if (key === "held") return c.censored ? Infinity : c.held_ms;
      return c.order;
    }
    function sortBy(key, dir) {
      state = { key: key, dir: dir };
      var list = data.conflicts.slice().sort(function (a, b) {
        var x = value(a, key), y = value(b, key);
        if (x === null && y === null) return a.order - b.order;
        if (x === null) return 1; // unknown hold times last, either way
        if (y === null) return -1;
        if (x === y) return a.order - b.order;
        return x < y ? -dir : dir;
      });
      list.forEach(function (c) { tbody.appendChild(rows[c.id]); });
      table.querySelectorAll("th[data-sort]").forEach(function (th) {
        if (th.dataset.sort === key) {
          th.setAttribute("aria-sort", dir > 0 ? "ascending" : "descending");
        } else {
          th.removeAttribute("aria-sort");
        }
      });
    }
    table.querySelectorAll("th[data-sort]").forEach(function (th) {
      var button = document.createElement("button");
      button.type = "button";
      button.className = "sort";
      button.textContent = th.textContent;
      button.title = "sort by " + th.textContent;
      th.textContent = "";
      th.appendChild(button);
      button.addEventListener("click", function () {
        var key = th.dataset.sort;
        sortBy(key, state.key === key ? -state.dir : (key === "held" ? -1 : 1));
      });
    });

    // a link to a row the filters hide clears the filters first
    function reveal() {
      var id = decodeURIComponent(window.location.hash.slice(1));
      var row = rows[id];
      if (row && row.classList.contains("filtered-out")) {
        form.reset();
        apply();
        row.scrollIntoView({ block: "center" });
      }
    }
    window.addEventListener("hashchange", reveal);
    reveal();
  }

  // ------------------------------------------------------------------ timelines

  var SVGNS = "http://www.w3.org/2000/svg";

  function niceTicks(lo, hi, target) {
    var span = hi - lo;
    if (!(span > 0) || !isFinite(span)) return { ticks: [lo], step: 1 };
    var raw = span / target;
    var power = Math.pow(10, Math.floor(Math.log10(raw)));
    var step = [1, 2, 5, 10].map(function (m) { return m * power; })
      .filter(function (s) { return s >= raw; })[0];
    var ticks = [];
    for (var i = Math.ceil(lo / step); i <= Math.floor(hi / step); i += 1) {
      ticks.push(i === 0 ? 0 : i * step);
    }
    return { ticks: ticks, step: step };
  }

  function tickText(value, step) {
    if (Math.abs(value) < step / 1e6) value = 0; // never "-0"
    var decimals = Math.max(0, -Math.floor(Math.log10(step)));
    return value.toLocaleString("en-US", {
      minimumFractionDigits: decimals, maximumFractionDigits: decimals
    });
  }

  function timeline(wrap) {
    var svg = wrap.querySelector("svg.timeline");
    var plot = svg && svg.querySelector("svg.plot");
    if (!plot) return;
    var width = Number(svg.dataset.w);
    var lo0 = Number(svg.dataset.lo), hi0 = Number(svg.dataset.hi);
    var lo = lo0, hi = hi0;
    var height = Number(plot.getAttribute("height"));
    var grid = svg.querySelector("g.grid");
    var ticks = svg.querySelector("g.ticks");
    var controls = wrap.querySelector(".tl-controls");
    var range = controls.querySelector("output");
    var tip = wrap.querySelector(".tip");
    controls.hidden = false;

    function X(ms) { return (ms - lo) / (hi - lo) * width; }
    function clamp(x) { return Math.min(Math.max(x, -20), width + 20); }

    function el(name, attrs, text) {
      var node = document.createElementNS(SVGNS, name);
      Object.keys(attrs).forEach(function (k) { node.setAttribute(k, attrs[k]); });
      if (text !== undefined) node.textContent = text;
      return node;
    }

    function draw() {
      svg.querySelectorAll("[data-s]").forEach(function (node) {
        var x0 = clamp(X(Number(node.dataset.s))), x1 = clamp(X(Number(node.dataset.e)));
        var min = node.classList.contains("bar") ? 2 : 1;
        node.setAttribute("x", x0.toFixed(2));
        node.setAttribute("width", Math.max(x1 - x0, min).toFixed(2));
      });
      svg.querySelectorAll(".fail[data-x]").forEach(function (node) {
        node.querySelector(".fail-mark").setAttribute(
          "transform", "translate(" + X(Number(node.dataset.x)).toFixed(2) + "," +
          node.dataset.y + ")");
      });
      svg.querySelectorAll("circle.success").forEach(function (node) {
        node.setAttribute("cx", X(Number(node.dataset.x)).toFixed(2));
      });
      var t = niceTicks(lo, hi, 8);
      grid.textContent = "";
      ticks.textContent = "";
      t.ticks.forEach(function (v) {
        var x = X(v).toFixed(2);
        grid.appendChild(el("line", { "class": "gridline", x1: x, x2: x, y1: 0, y2: height }));
        var g = el("g", { "class": "tick", transform: "translate(" + x + ",0)" });
        g.appendChild(el("line", { y2: 5 }));
        g.appendChild(el("text", { y: 18, "text-anchor": "middle" }, tickText(v, t.step)));
        ticks.appendChild(g);
      });
      var digits = Math.max(0, Math.min(4, 2 - Math.floor(Math.log10(hi - lo))));
      range.textContent = "showing " + tickText(lo, Math.pow(10, -digits)) + " to " +
        tickText(hi, Math.pow(10, -digits)) + " ms";
      svg.dataset.viewLo = String(lo);
      svg.dataset.viewHi = String(hi);
    }

    function zoom(center, factor) {
      var span = (hi - lo) * factor;
      var full = (hi0 - lo0) * 50;
      if (span < 1e-4 || span > full) return;
      lo = center - (center - lo) * factor;
      hi = lo + span;
      draw();
    }
    function pan(fraction) {
      var shift = (hi - lo) * fraction;
      lo += shift;
      hi += shift;
      draw();
    }

    controls.addEventListener("click", function (e) {
      var button = e.target.closest("button[data-zoom]");
      if (!button) return;
      var what = button.dataset.zoom;
      if (what === "in") zoom((lo + hi) / 2, 0.5);
      else if (what === "out") zoom((lo + hi) / 2, 2);
      else if (what === "left") pan(-0.25);
      else if (what === "right") pan(0.25);
      else { lo = lo0; hi = hi0; draw(); }
    });

    function msAt(clientX) {
      var box = plot.getBoundingClientRect();
      return lo + (clientX - box.left) / box.width * (hi - lo);
    }
    plot.addEventListener("wheel", function (e) {
      if (e.deltaY === 0) return;
      e.preventDefault();
      zoom(msAt(e.clientX), e.deltaY < 0 ? 0.8 : 1.25);
    }, { passive: false });

    var drag = null;
    plot.addEventListener("pointerdown", function (e) {
      if (e.button !== 0 || e.target.closest(".fail")) return;
      drag = { x: e.clientX, lo: lo, hi: hi, moved: false, id: e.pointerId };
    });
    plot.addEventListener("pointermove", function (e) {
      if (!drag) return;
      var dx = e.clientX - drag.x;
      if (!drag.moved && Math.abs(dx) < 4) return;
      if (!drag.moved) { drag.moved = true; plot.setPointerCapture(drag.id); }
      var box = plot.getBoundingClientRect();
      var shift = -dx / box.width * (drag.hi - drag.lo);
      lo = drag.lo + shift;
      hi = drag.hi + shift;
      draw();
    });
    function endDrag() { drag = null; }
    plot.addEventListener("pointerup", endDrag);
    plot.addEventListener("pointercancel", endDrag);

    // tooltips: the <title> of each bar and mark, shown styled on hover and focus
    function show(node) {
      tip.textContent = node.dataset.tip;
      tip.hidden = false;
      var box = node.getBoundingClientRect(), outer = wrap.getBoundingClientRect();
      var left = box.left - outer.left + Math.min(box.width, 40) / 2;
      left = Math.max(0, Math.min(left, outer.width - tip.offsetWidth));
      tip.style.left = left + "px";
      tip.style.top = (box.bottom - outer.top + 6) + "px";
    }
    function hide() { tip.hidden = true; }
    svg.querySelectorAll(".bar, .fail, circle.success").forEach(function (node) {
      var title = node.querySelector("title");
      if (!title) return;
      node.dataset.tip = title.textContent;
      title.remove();
      node.addEventListener("mouseenter", function () { show(node); });
      node.addEventListener("focus", function () { show(node); });
      node.addEventListener("mouseleave", hide);
      node.addEventListener("blur", hide);
    });
    draw();
  }

  // ------------------------------------------------------------------ code snippets

  function snippets() {
    var details = document.getElementById("snippets");
    if (!details) return;
    var tabs = details.querySelector(".tabs");
    var panels = Array.prototype.slice.call(details.querySelectorAll(".snippet"));
    var buttons = [];
    function select(index, focus) {
      panels.forEach(function (panel, i) {
        panel.hidden = i !== index;
        buttons[i].setAttribute("aria-selected", i === index ? "true" : "false");
        buttons[i].tabIndex = i === index ? 0 : -1;
      });
      if (focus) buttons[index].focus();
    }
    panels.forEach(function (panel, i) {
      var button = document.createElement("button");
      button.type = "button";
      button.id = "tab-" + panel.id;
      button.setAttribute("role", "tab");
      button.setAttribute("aria-controls", panel.id);
      button.textContent = panel.dataset.label;
      panel.setAttribute("role", "tabpanel");
      panel.setAttribute("aria-labelledby", button.id);
      button.addEventListener("click", function () { select(i, false); });
      button.addEventListener("keydown", function (e) {
        var step = e.key === "ArrowRight" ? 1 : e.key === "ArrowLeft" ? -1 : 0;
        if (step) { e.preventDefault(); select((i + step + panels.length) % panels.length, true); }
      });
      tabs.appendChild(button);
      buttons.push(button);
    });
    tabs.hidden = false;
    if (panels.length) select(0, false);
  }

  // ------------------------------------------------------------------ printing

  function printing() {
    var opened = [];
    window.addEventListener("beforeprint", function () {
      document.querySelectorAll("details:not([open])").forEach(function (d) {
        d.open = true;
        opened.push(d);
      });
    });
    window.addEventListener("afterprint", function () {
      opened.forEach(function (d) { d.open = false; });
      opened = [];
    });
  }

  conflicts();
  document.querySelectorAll(".tl-wrap").forEach(timeline);
  snippets();
  printing();
}());
