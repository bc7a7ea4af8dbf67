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
  var probabilities = document.getElementById("probabilities");
  var modelVersion = document.getElementById("model-version");
  var samplesSeen = document.getElementById("samples-seen");
  var message = document.getElementById("message");

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
  function showMessage(text, kind) {
    message.textContent = text || "";
    message.className = "message" + (kind ? " " + kind : "");
  }

  function showModel(version, seen) {
    modelVersion.textContent = version === null || version === undefined ? "–" : String(version);
    samplesSeen.textContent = seen === null || seen === undefined ? "–" : String(seen);
  }

  function showProbabilities(list) {
    probabilities.textContent = "";
    (list || []).forEach(function (item) {
      var li = document.createElement("li");
      var d = document.createElement("span");
      d.className = "d";
      d.textContent = String(item.digit);
      var bar = document.createElement("span");
      bar.className = "bar";
      bar.style.width = Math.max(2, Math.round(item.p * 120)) + "px";
      var p = document.createElement("span");
      p.className = "p";
      p.textContent = (item.p * 100).toFixed(1) + " %";
      li.appendChild(d);
      li.appendChild(bar);
      li.appendChild(p);
      probabilities.appendChild(li);
    });
  }

  function clearAnswer() {
    result.textContent = "";
    showProbabilities([]);
  }

  function predict() {
    if (strokes.length === 0) {
      showMessage("Draw a digit first.", "warn");
      return;
    }
    predictButton.disabled = true;
    showMessage("Predicting…");
    var body = new URLSearchParams();
    body.set("imgStr", toDataUrl());
    fetch("predict", { method: "POST", body: body })
      .then(function (response) {
        return response.json().catch(function () {
          return { success: false, error: "the server answered " + response.status };
        });
      })
      .then(function (answer) {
        if (!answer.success) {
          clearAnswer();
          showMessage(answer.error || "prediction failed", "error");
          return;
        }
        result.textContent = String(answer.predict_result);
        showProbabilities(answer.probabilities);
        showModel(answer.model_version, answer.samples_seen);
        showMessage(answer.stale ? "Redis is unreachable: answered with the last model loaded."
          : "", answer.stale ? "warn" : "");
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

  function loadModelInfo() {
    fetch("api/model")
      .then(function (response) { return response.json(); })
      .then(function (info) {
        if (info && info.model) showModel(info.model.version, info.model.samples_seen);
        else if (info && info.message) showMessage(info.message, "warn");
      })
      .catch(function () { /* the first prediction will report the problem */ });
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
  loadModelInfo();

  // for tests and the console
  window.digitBoard = { toSvg: toSvg, toDataUrl: toDataUrl, clear: clearBoard, predict: predict };
}());
