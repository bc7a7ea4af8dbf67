// The board's monitoring panel: the model's prequential and recent accuracy and the training
// throughput over time (uPlot charts, from GET api/metrics/history, one point per model backup)
// and the share of each label seen. static/board.js creates it and polls it:
//   var monitor = window.BoardMonitor({ getJson: getJson, formatAge: formatAge });
//   monitor.load();  // the points since the last load
(function () {
  "use strict";

  window.BoardMonitor = function (helpers) {
    var getJson = helpers.getJson;
    var formatAge = helpers.formatAge;
    var monitorStatus = document.getElementById("monitor-status");

    var MAX_POINTS = 2000;
    var series = { time: [], accuracy: [], rolling: [], throughput: [] };
    var lastTime = null;
    var charts = {};
    var labelsBox = document.getElementById("chart-labels");

    function chartWidth(el) {
      return Math.max(240, Math.floor(el.getBoundingClientRect().width || 320));
    }

    function makeCharts() {
      if (!window.uPlot) {
        monitorStatus.textContent = "(chart library missing)";
        return;
      }
      var accEl = document.getElementById("chart-accuracy");
      var thrEl = document.getElementById("chart-throughput");
      var pct = function (u, v) { return v === null || v === undefined ? "–" : v.toFixed(1) + " %"; };
      // time axis from the first point to the last, at least a minute wide: with a single snapshot
      // uPlot widens the range by years before asking, so read the data itself
      var timeRange = function (u, min, max) {
        var xs = (u.data && u.data[0]) || [];
        if (!xs.length) return [min, max];
        return [xs[0], Math.max(xs[xs.length - 1], xs[0] + 60)];
      };
      // one line per tick: uPlot's two-line labels (time, then the date and hour under the first
      // tick and each new hour) ran into each other on a range of a minute or two
      var timeAxis = {
        space: 70,
        values: function (u, splits) {
          var span = splits.length > 1 ? splits[splits.length - 1] - splits[0] : 0;
          return splits.map(function (t) {
            var d = new Date(t * 1000);
            var hm = ("0" + d.getHours()).slice(-2) + ":" + ("0" + d.getMinutes()).slice(-2);
            if (span < 600) return hm + ":" + ("0" + d.getSeconds()).slice(-2);
            if (span < 2 * 86400) return hm;
            return (d.getMonth() + 1) + "/" + d.getDate() + " " + hm;
          });
        }
      };
      charts.accuracy = new window.uPlot({
        width: chartWidth(accEl), height: 180,
        legend: { live: false },
        scales: { x: { time: true, range: timeRange }, y: { range: [0, 100] } },
        series: [
          {},
          { label: "cumulative", stroke: "#1f6feb", width: 2, value: pct },
          { label: "last N", stroke: "#d97706", width: 2, value: pct }
        ],
        axes: [timeAxis, { values: function (u, vals) { return vals.map(function (v) { return v + "%"; }); } }]
      }, [[], [], []], accEl);
      charts.throughput = new window.uPlot({
        width: chartWidth(thrEl), height: 180,
        legend: { live: false },
        scales: { x: { time: true, range: timeRange },
                  y: { range: function (u, min, max) { return [0, Math.max(1, max * 1.15)]; } } },
        series: [
          {},
          { label: "records/s", stroke: "#2da44e", width: 2, fill: "rgba(45,164,78,0.12)",
            value: function (u, v) { return v === null || v === undefined ? "–" : v.toFixed(1); } }
        ],
        axes: [timeAxis, {}]
      }, [[], []], thrEl);
      window.addEventListener("resize", function () {
        charts.accuracy.setSize({ width: chartWidth(accEl), height: 180 });
        charts.throughput.setSize({ width: chartWidth(thrEl), height: 180 });
      });
    }

    function drawLabels(distribution) {
      var counts = [], max = 0, total = 0;
      for (var d = 0; d < 10; d++) {
        var n = Number((distribution || {})[String(d)] || 0);
        counts.push(n);
        max = Math.max(max, n);
        total += n;
      }
      labelsBox.textContent = "";
      counts.forEach(function (n, digit) {
        var col = document.createElement("div");
        col.className = "col";
        col.title = digit + ": " + n + " records";
        var bar = document.createElement("div");
        bar.className = "bar";
        bar.style.height = (max ? Math.max(1, Math.round(n / max * 120)) : 1) + "px";
        var count = document.createElement("div");
        count.className = "n";
        count.textContent = total ? (n / total * 100).toFixed(0) + "%" : "";
        var label = document.createElement("div");
        label.className = "d";
        label.textContent = String(digit);
        col.appendChild(count);
        col.appendChild(bar);
        col.appendChild(label);
        labelsBox.appendChild(col);
      });
    }

    function pct100(v) { return typeof v === "number" ? v * 100 : null; }

    function loadHistory() {
      var url = "api/metrics/history" + (lastTime !== null ? "?since=" + lastTime : "");
      return getJson(url)
        .then(function (body) {
          if (!body.success) {
            monitorStatus.textContent = "(" + (body.error || "history unavailable") + ")";
            return;
          }
          (body.history || []).forEach(function (p) {
            if (typeof p.time !== "number" || (lastTime !== null && p.time <= lastTime)) return;
            series.time.push(p.time);
            series.accuracy.push(pct100(p.accuracy));
            series.rolling.push(pct100(p.rolling_accuracy));
            series.throughput.push(typeof p.throughput === "number" ? p.throughput : null);
            lastTime = p.time;
          });
          ["time", "accuracy", "rolling", "throughput"].forEach(function (k) {
            if (series[k].length > MAX_POINTS) series[k].splice(0, series[k].length - MAX_POINTS);
          });
          if (charts.accuracy) {
            charts.accuracy.setData([series.time, series.accuracy, series.rolling]);
            charts.throughput.setData([series.time, series.throughput]);
            if (body.rolling_window) {
              charts.accuracy.series[2].label = "last " + body.rolling_window;
              var labels = charts.accuracy.root.querySelectorAll(".u-legend .u-label");
              Array.prototype.forEach.call(labels, function (el) {
                if (/^last /.test(el.textContent)) el.textContent = "last " + body.rolling_window;
              });
            }
          }
          if (body.label_distribution && Object.keys(body.label_distribution).length) {
            drawLabels(body.label_distribution);
          }
          var n = series.time.length;
          if (n === 0) {
            monitorStatus.textContent = "(" + (body.message || "no history yet") + ")";
          } else {
            var ago = typeof body.now === "number" ? body.now - series.time[n - 1] : null;
            monitorStatus.textContent = "(" + n + " snapshots" +
              (ago !== null ? ", newest " + formatAge(ago) + " ago" : "") + ")";
          }
          monitorStatus.dataset.points = String(n);
        })
        .catch(function () { monitorStatus.textContent = "(server unreachable)"; });
    }

    drawLabels({});
    makeCharts();
    return { load: loadHistory, series: series };
  };
}());
