/* Modelkeep UI: times in the viewer's zone, metric charts (uPlot). No inline script: the pages' CSP forbids it. */
(function () {
  "use strict";

  function localTimes(root) {
    root.querySelectorAll("time[datetime]:not([data-local])").forEach(function (el) {
      var iso = el.getAttribute("datetime");
      var when = new Date(iso);
      if (isNaN(when.getTime())) return;
      el.title = iso;
      el.textContent = when.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
      el.dataset.local = "1";
    });
  }

  function cssVar(name) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  }

  var drawn = [];

  // What the chart controls (run page) ask for: the x axis and the smoothing weight.
  function chartOptions() {
    var axis = document.getElementById("x-axis");
    var smoothing = document.getElementById("smoothing");
    return {
      x: axis ? axis.value : "step",
      weight: smoothing ? Math.min(Math.max(parseFloat(smoothing.value) || 0, 0), 0.99) : 0,
    };
  }

  // Exponential moving average, debiased as TensorBoard's (early points are not pulled toward zero).
  function smooth(values, weight) {
    var out = new Array(values.length);
    var last = 0;
    var n = 0;
    for (var i = 0; i < values.length; i++) {
      var v = values[i];
      if (v === null || !isFinite(v)) {
        out[i] = v;
        continue;
      }
      last = last * weight + (1 - weight) * v;
      n++;
      out[i] = last / (1 - Math.pow(weight, n));
    }
    return out;
  }

  // The x values for the chosen axis; uPlot wants them ascending, so points are sorted on x when needed.
  function columns(data, mode) {
    var xs;
    if (mode === "time") {
      xs = data.times.map(function (t) { return t / 1000; });
    } else if (mode === "relative") {
      var first = Math.min.apply(null, data.times.length ? data.times : [0]);
      xs = data.times.map(function (t) { return (t - first) / 1000; });
    } else {
      xs = data.steps.slice();
    }
    var ys = data.values.slice();
    var sorted = true;
    for (var i = 1; i < xs.length; i++) if (xs[i] < xs[i - 1]) { sorted = false; break; }
    if (!sorted) {
      var order = xs.map(function (_, i) { return i; }).sort(function (a, b) { return xs[a] - xs[b] || a - b; });
      xs = order.map(function (i) { return xs[i]; });
      ys = order.map(function (i) { return ys[i]; });
    }
    return [xs, ys];
  }

  var AXIS_LABELS = { step: "step", time: "time", relative: "seconds since start" };

  function render(box, data) {
    var plot = box.querySelector(".plot");
    var options = chartOptions();
    var axis = {
      stroke: cssVar("--muted"),
      grid: { stroke: cssVar("--chart-grid"), width: 1 },
      ticks: { stroke: cssVar("--chart-grid") },
    };
    var cols = columns(data, options.x);
    var series = [{ label: AXIS_LABELS[options.x] }];
    var lines = [cols[0]];
    var few = cols[0].length < 60;
    if (options.weight > 0) {
      series.push({ label: data.key + " (raw)", stroke: cssVar("--chart-raw"), width: 1, points: { show: false } });
      series.push({ label: data.key, stroke: cssVar("--chart-1"), width: 1.5, points: { show: few } });
      lines.push(cols[1], smooth(cols[1], options.weight));
    } else {
      series.push({ label: data.key, stroke: cssVar("--chart-1"), width: 1.5, points: { show: few } });
      lines.push(cols[1]);
    }
    var chart = new uPlot(
      {
        width: Math.max(plot.clientWidth, 200),
        height: 200,
        scales: { x: { time: options.x === "time" } },
        axes: [Object.assign({ label: AXIS_LABELS[options.x] }, axis), axis],
        series: series,
      },
      lines,
      plot
    );
    var resized = window.ResizeObserver
      ? new ResizeObserver(function () {
          chart.setSize({ width: Math.max(plot.clientWidth, 200), height: 200 });
        })
      : null;
    if (resized) resized.observe(plot);
    box.dataset.axis = options.x;
    box.dataset.smoothing = String(options.weight);
    drawn.push({ box: box, data: data, chart: chart, resized: resized });
  }

  function redrawAll() {
    var again = drawn;
    drawn = [];
    again.forEach(function (item) {
      if (item.resized) item.resized.disconnect();
      item.chart.destroy();
      render(item.box, item.data);
    });
  }

  function drawChart(box) {
    if (box.dataset.state) return;
    box.dataset.state = "loading";
    var note = box.querySelector(".note");
    fetch(box.dataset.series, { credentials: "same-origin", headers: { accept: "application/json" } })
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.json();
      })
      .then(function (data) {
        var shown = data.steps.length;
        render(box, data);
        box.dataset.points = String(shown);
        box.dataset.total = String(data.total);
        note.textContent =
          shown === data.total
            ? data.total + " points"
            : shown + " of " + data.total + " points (downsampled: each step range's low and high kept)";
        box.dataset.state = "drawn";
      })
      .catch(function (error) {
        box.dataset.state = "failed";
        note.textContent = "could not load this metric (" + error.message + ")";
      });
  }

  function wireControls(root) {
    var form = root.querySelector ? root.querySelector("form.chart-controls") : null;
    if (!form || form.dataset.wired) return;
    form.dataset.wired = "1";
    form.addEventListener("submit", function (event) { event.preventDefault(); });
    var output = form.querySelector("output");
    form.addEventListener("input", function () {
      var weight = chartOptions().weight;
      if (output) output.textContent = String(weight);
      redrawAll();
    });
  }

  // Canvas colours are fixed when drawn: redraw when the system switches between light and dark.
  if (window.matchMedia) {
    window.matchMedia("(prefers-color-scheme: dark)").addEventListener("change", redrawAll);
  }

  function enhance(root) {
    localTimes(root);
    wireControls(root);
    if (window.uPlot) root.querySelectorAll(".chart[data-series]").forEach(drawChart);
  }

  document.addEventListener("DOMContentLoaded", function () {
    enhance(document);
  });
  document.addEventListener("htmx:afterSettle", function (event) {
    enhance(event.target);
  });
})();
