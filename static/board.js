// Drawing board: pointer events (mouse, pen, touch) on a canvas; the strokes are sent to the
// server as an SVG data URL in form field imgStr, like the tutorial's jSignature board does.
// The server redraws the strokes itself, so only the geometry matters, not the canvas pixels.
(function () {
  "use strict";

  var canvas = document.getElementById("board");
  var ctx = canvas.getContext("2d");
  var predictButton = document.getElementById("predict");
  var clearButton = document.getElementById("clear");
  var result = document.getElementById("result");
  var modelVersion = document.getElementById("model-version");
  var samplesSeen = document.getElementById("samples-seen");
  var modelLearners = document.getElementById("model-learners");
  var modelAge = document.getElementById("model-age");
  var modelAccuracy = document.getElementById("model-accuracy");
  var modelRolling = document.getElementById("model-rolling");
  var rollingWindow = document.getElementById("rolling-window");
  var message = document.getElementById("message");
  var trainingBanner = document.getElementById("training-banner");

  var MODEL_POLL_MS = 5000;     // model info and monitoring charts

  var PEN_WIDTH = 8;          // CSS px on the board (display only; the server normalises)
  var strokes = [];           // [[{x, y}, ...], ...] in CSS px
  var current = null;         // stroke being drawn
  var activePointer = null;   // one pointer draws at a time (ignore a resting palm)

  // -- canvas size: sharp on high-DPI screens, coordinates in CSS px --------------------------
  function cssSize() {
    var rect = canvas.getBoundingClientRect();
    return { width: rect.width || canvas.width, height: rect.height || canvas.height };
  }

  function resize() {
    var size = cssSize();
    var ratio = window.devicePixelRatio || 1;
    canvas.width = Math.round(size.width * ratio);
    canvas.height = Math.round(size.height * ratio);
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    redraw();
  }

  function redraw() {
    var size = cssSize();
    ctx.clearRect(0, 0, size.width, size.height);
    ctx.strokeStyle = "#000";
    ctx.fillStyle = "#000";
    ctx.lineWidth = PEN_WIDTH;
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    strokes.forEach(drawStroke);
  }

  function drawStroke(points) {
    if (points.length === 1) {
      ctx.beginPath();
      ctx.arc(points[0].x, points[0].y, PEN_WIDTH / 2, 0, 2 * Math.PI);
      ctx.fill();
      return;
    }
    ctx.beginPath();
    ctx.moveTo(points[0].x, points[0].y);
    for (var i = 1; i < points.length; i++) ctx.lineTo(points[i].x, points[i].y);
    ctx.stroke();
  }

  function drawSegment(a, b) {
    ctx.beginPath();
    ctx.moveTo(a.x, a.y);
    ctx.lineTo(b.x, b.y);
    ctx.stroke();
  }

  // -- pointer input ---------------------------------------------------------------------------
  function point(event) {
    var rect = canvas.getBoundingClientRect();
    return {
      x: Math.round((event.clientX - rect.left) * 100) / 100,
      y: Math.round((event.clientY - rect.top) * 100) / 100
    };
  }

  canvas.addEventListener("pointerdown", function (event) {
    if (activePointer !== null || (event.pointerType === "mouse" && event.button !== 0)) return;
    event.preventDefault();
    activePointer = event.pointerId;
    canvas.setPointerCapture(event.pointerId);
    current = [point(event)];
    strokes.push(current);
    drawStroke(current);
  });

  canvas.addEventListener("pointermove", function (event) {
    if (event.pointerId !== activePointer || current === null) return;
    event.preventDefault();
    // coalesced events give the full resolution of fast pen and finger movements
    var events = event.getCoalescedEvents ? event.getCoalescedEvents() : [];
    if (events.length === 0) events = [event];
    events.forEach(function (e) {
      var p = point(e);
      var last = current[current.length - 1];
      // closer than a pixel adds nothing but bytes (the server limits points per drawing)
      if (Math.abs(p.x - last.x) < 1 && Math.abs(p.y - last.y) < 1) return;
      current.push(p);
      drawSegment(last, p);
    });
  });

  function endStroke(event) {
    if (event.pointerId !== activePointer) return;
    activePointer = null;
    current = null;
  }
  canvas.addEventListener("pointerup", endStroke);
  canvas.addEventListener("pointercancel", endStroke);

  // -- SVG export (the jSignature format: one <path> per stroke, stroked, not filled) -----------
  function toSvg() {
    var size = cssSize();
    var w = Math.round(size.width), h = Math.round(size.height);
    var paths = strokes.map(function (points) {
      var d = "M " + points[0].x + " " + points[0].y;
      if (points.length === 1) {
        d += " l 1 1";  // a dot, as jSignature writes it
      } else {
        for (var i = 1; i < points.length; i++) d += " L " + points[i].x + " " + points[i].y;
      }
      return '<path fill="none" stroke="#000000" stroke-width="' + PEN_WIDTH +
        '" stroke-linecap="round" stroke-linejoin="round" d="' + d + '"/>';
    });
    return '<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="' + w +
      '" height="' + h + '" viewBox="0 0 ' + w + " " + h + '">' + paths.join("") + "</svg>";
  }

  function toDataUrl() {
    return "data:image/svg+xml;base64," + window.btoa(toSvg());  // ASCII only: btoa is safe
  }

  // -- talking to the server -------------------------------------------------------------------
  function getJson(url, options) {
    return fetch(url, options).then(function (response) {
      return response.json().catch(function () {
        return { success: false, error: "the server answered " + response.status };
      });
    });
  }

  // a status line: its text, and its kind ("warn", "error", ...) as a class for the colour
  function showIn(element, text, kind) {
    element.textContent = text || "";
    element.className = "message" + (kind ? " " + kind : "");
  }

  function showMessage(text, kind) {
    showIn(message, text, kind);
  }

  function percent(value) {
    return typeof value === "number" ? (value * 100).toFixed(1) + " %" : "–";
  }

  function formatAge(seconds) {
    if (typeof seconds !== "number" || !isFinite(seconds)) return "–";
    seconds = Math.max(0, Math.round(seconds));
    if (seconds < 60) return seconds + " s";
    if (seconds < 3600) return Math.floor(seconds / 60) + " min " + (seconds % 60) + " s";
    if (seconds < 86400) return Math.floor(seconds / 3600) + " h " + Math.floor(seconds % 3600 / 60) + " min";
    return Math.floor(seconds / 86400) + " d " + Math.floor(seconds % 86400 / 3600) + " h";
  }

  // The model shown: version, samples, accuracies and age (ticks locally between polls).
  var shownAge = null;  // {seconds, at: performance.now()}
  function showModel(info) {
    info = info || {};
    var dash = function (v) { return v === null || v === undefined ? "–" : String(v); };
    modelVersion.textContent = dash(info.version);
    samplesSeen.textContent = dash(info.samples_seen);
    // parallel learners (README "Parallel learners"): how many were merged into this model
    modelLearners.textContent = info.learners
      ? info.learners + (info.learners === 1 ? " learner" : " learners") : "–";
    modelAccuracy.textContent = percent(info.accuracy);
    modelRolling.textContent = percent(info.rolling_accuracy);
    if (info.rolling_window) rollingWindow.textContent = String(info.rolling_window);
    shownAge = typeof info.age_seconds === "number"
      ? { seconds: info.age_seconds, at: performance.now() } : null;
    tickAge();
  }

  function tickAge() {
    modelAge.textContent = shownAge
      ? formatAge(shownAge.seconds + (performance.now() - shownAge.at) / 1000) : "–";
  }

  function clearAnswer() {
    result.textContent = "";
    answerView.clear();
    feedback.hide();
  }

  function predict() {
    if (strokes.length === 0) {
      showMessage("Draw a digit first.", "warn");
      return;
    }
    predictButton.disabled = true;
    showMessage("Predicting…");
    var drawing = toDataUrl();
    var body = new URLSearchParams();
    body.set("imgStr", drawing);
    body.set("explain", "1");
    getJson("predict", { method: "POST", body: body })
      .then(function (answer) {
        if (!answer.success) {
          clearAnswer();
          showMessage(answer.error || "prediction failed", "error");
          return;
        }
        result.textContent = String(answer.predict_result);
        answerView.show(answer);
        showModel({
          version: answer.model_version, samples_seen: answer.samples_seen,
          accuracy: answer.accuracy, rolling_accuracy: answer.rolling_accuracy,
          rolling_window: answer.rolling_window, age_seconds: answer.age_seconds,
          learners: answer.learners
        });
        showMessage(answer.stale ? "Redis is unreachable: answered with the last model loaded."
          : "", answer.stale ? "warn" : "");
        feedback.offer(answer.predict_result, drawing);
      })
      .catch(function (error) {
        clearAnswer();
        showMessage("The server cannot be reached: " + error, "error");
      })
      .then(function () { predictButton.disabled = false; });
  }

  function clearBoard() {
    strokes = [];
    current = null;
    activePointer = null;
    redraw();
    clearAnswer();
    showMessage("");
  }

  // -- model info and the monitoring panel -------------------------------------------------------
  // The banner: training is not running, or the model no longer changes while records arrive
  // (the server decides: training_problem). It goes away by itself when training is back.
  var TRAINING_WORDS = {
    absent: "training stopped: no training job on the cluster",
    unreachable: "training stopped: Flink does not answer",
    failed: "training failed",
    canceled: "training stopped: the job was cancelled",
    finished: "training stopped: the job was stopped",
    restarting: "training is restarting",
    initializing: "training is starting",
    created: "training is starting"
  };

  function clockTime(epochSeconds) {
    var d = new Date(epochSeconds * 1000);
    var hm = ("0" + d.getHours()).slice(-2) + ":" + ("0" + d.getMinutes()).slice(-2);
    return d.toDateString() === new Date().toDateString() ? hm : d.toLocaleDateString() + " " + hm;
  }

  function showTraining(info) {
    var problem = info && info.training_problem;
    if (!problem) {
      trainingBanner.hidden = true;
      trainingBanner.textContent = "";
      delete trainingBanner.dataset.problem;
      return;
    }
    var text = problem === "model_stale" ? "training stalled"
      : TRAINING_WORDS[info.training] || "training is " + info.training;
    var saved = info.model && info.model.saved_at;
    if (typeof saved === "number") {
      text += " — the model is from " + clockTime(saved);
      if (problem === "model_stale") text += ", while records keep arriving";
    }
    if (info.training_action === "resubmitting") text += " — the job is being resubmitted";
    trainingBanner.textContent = text;
    trainingBanner.dataset.problem = problem;
    trainingBanner.hidden = false;
  }

  function loadModelInfo() {
    return getJson("api/model")
      .then(function (info) {
        showTraining(info);
        if (info && info.model) {
          var m = info.model;
          showModel({
            version: m.version, samples_seen: m.samples_seen, accuracy: m.accuracy,
            rolling_accuracy: m.rolling_accuracy, rolling_window: m.rolling_window,
            age_seconds: info.age_seconds, learners: m.learners
          });
        } else if (info && info.message && !result.textContent) {
          showMessage(info.message, "warn");
        }
      })
      .catch(function () { /* the next poll or prediction will report the problem */ });
  }

  // the answer's details (static/answer.js), the monitoring panel (static/monitor.js) and the
  // feedback (static/feedback.js)
  var answerView = window.BoardAnswer();
  var monitor = window.BoardMonitor({ getJson: getJson, formatAge: formatAge });
  var feedback = window.BoardFeedback({ getJson: getJson, showIn: showIn,
                                        onIncluded: loadModelInfo });

  function poll() {
    Promise.all([loadModelInfo(), monitor.load()]).then(function () {
      window.setTimeout(poll, MODEL_POLL_MS);
    });
  }

  predictButton.addEventListener("click", predict);
  clearButton.addEventListener("click", clearBoard);
  document.addEventListener("keydown", function (event) {
    if (event.target && event.target.tagName === "BUTTON") return;  // the button handles it
    if (event.key === "Enter") predict();
    else if (event.key === "Escape" || event.key === "Delete") clearBoard();
  });
  window.addEventListener("resize", resize);

  resize();
  poll();
  window.setInterval(tickAge, 1000);

  // for tests and the console
  window.digitBoard = {
    toSvg: toSvg, toDataUrl: toDataUrl, clear: clearBoard, predict: predict,
    sendFeedback: feedback.send, series: monitor.series
  };
}());
