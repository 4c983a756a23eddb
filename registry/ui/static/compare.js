/* Modelkeep UI, the compare page: one chart per metric with a series per run (uPlot). Each figure's data-runs
   lists the runs that logged the metric ({url, label, colour}); the series come from the run page's /series
   endpoint (at most 5,000 points each). Runs log at different steps: uPlot.join merges their x values, a run
   without a point at some step gets `undefined` there, which uPlot spans. No inline script: the CSP forbids it. */
(function () {
  "use strict";

  function cssVar(name) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  }

  function colour(n) {
    return cssVar("--chart-" + n) || cssVar("--chart-1");
  }

  var drawn = [];

  function render(box, sources, loaded) {
    var plot = box.querySelector(".plot");
    var axis = {
      stroke: cssVar("--muted"),
      grid: { stroke: cssVar("--chart-grid"), width: 1 },
      ticks: { stroke: cssVar("--chart-grid") },
    };
    var series = [{ label: "step" }];
    loaded.forEach(function (data, i) {
      series.push({
        label: sources[i].label,
        stroke: colour(sources[i].colour),
        width: 1.5,
        points: { show: data.steps.length < 60 },
      });
    });
    var joined = uPlot.join(
      loaded.map(function (data) {
        return [data.steps, data.values];
      })
    );
    var chart = new uPlot(
      {
        width: Math.max(plot.clientWidth, 200),
        height: 220,
        scales: { x: { time: false } },
        axes: [Object.assign({ label: "step" }, axis), axis],
        series: series,
      },
      joined,
      plot
    );
    var resized = window.ResizeObserver
      ? new ResizeObserver(function () {
          chart.setSize({ width: Math.max(plot.clientWidth, 200), height: 220 });
        })
      : null;
    if (resized) resized.observe(plot);
    drawn.push({ box: box, sources: sources, loaded: loaded, chart: chart, resized: resized });
  }

  function fetchSeries(url) {
    return fetch(url, { credentials: "same-origin", headers: { accept: "application/json" } }).then(function (
      response
    ) {
      if (!response.ok) throw new Error("HTTP " + response.status);
      return response.json();
    });
  }

  function drawChart(box) {
    if (box.dataset.state) return;
    box.dataset.state = "loading";
    var note = box.querySelector(".note");
    var sources;
    try {
      sources = JSON.parse(box.dataset.runs);
    } catch (error) {
      box.dataset.state = "failed";
      note.textContent = "could not read this chart's runs";
      return;
    }
    Promise.all(sources.map(function (s) { return fetchSeries(s.url); }))
      .then(function (loaded) {
        render(box, sources, loaded);
        var shown = 0;
        var total = 0;
        var downsampled = false;
        loaded.forEach(function (data) {
          shown += data.steps.length;
          total += data.total;
          if (data.steps.length < data.total) downsampled = true;
        });
        box.dataset.points = String(shown);
        box.dataset.total = String(total);
        box.dataset.seriesCount = String(loaded.length);
        note.textContent =
          loaded.length + (loaded.length === 1 ? " run, " : " runs, ") +
          (downsampled ? shown + " of " + total + " points (downsampled, peaks kept)" : total + " points");
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
        render(item.box, item.sources, item.loaded);
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    if (window.uPlot) document.querySelectorAll(".chart[data-runs]").forEach(drawChart);
  });
})();
