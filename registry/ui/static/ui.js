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

  function render(box, data) {
    var plot = box.querySelector(".plot");
    var axis = {
      stroke: cssVar("--muted"),
      grid: { stroke: cssVar("--chart-grid"), width: 1 },
      ticks: { stroke: cssVar("--chart-grid") },
    };
    var chart = new uPlot(
      {
        width: Math.max(plot.clientWidth, 200),
        height: 200,
        scales: { x: { time: false } },
        axes: [Object.assign({ label: "step" }, axis), axis],
        series: [
          { label: "step" },
          { label: data.key, stroke: cssVar("--chart-1"), width: 1.5, points: { show: data.steps.length < 60 } },
        ],
      },
      [data.steps, data.values],
      plot
    );
    var resized = window.ResizeObserver
      ? new ResizeObserver(function () {
          chart.setSize({ width: Math.max(plot.clientWidth, 200), height: 200 });
        })
      : null;
    if (resized) resized.observe(plot);
    drawn.push({ box: box, data: data, chart: chart, resized: resized });
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
            : shown + " of " + data.total + " points (downsampled, peaks kept)";
        box.dataset.state = "drawn";
      })
      .catch(function (error) {
        box.dataset.state = "failed";
        note.textContent = "could not load this metric (" + error.message + ")";
      });
  }

  // Canvas colours are fixed when drawn: redraw when the system switches between light and dark.
  if (window.matchMedia) {
    window.matchMedia("(prefers-color-scheme: dark)").addEventListener("change", function () {
      var again = drawn;
      drawn = [];
      again.forEach(function (item) {
        if (item.resized) item.resized.disconnect();
        item.chart.destroy();
        render(item.box, item.data);
      });
    });
  }

  function enhance(root) {
    localTimes(root);
    if (window.uPlot) root.querySelectorAll(".chart[data-series]").forEach(drawChart);
  }

  document.addEventListener("DOMContentLoaded", function () {
    enhance(document);
  });
  document.addEventListener("htmx:afterSettle", function (event) {
    enhance(event.target);
  });
})();
