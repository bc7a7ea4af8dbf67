// The board's feedback: after a prediction the user confirms it or picks the right digit; the
// label goes to the server (POST api/feedback, then into Kafka), and the page waits until a served
// model includes it (GET api/feedback/<id>). static/board.js creates it:
//   var feedback = window.BoardFeedback({ getJson: getJson, showIn: showIn, onIncluded: loadModelInfo });
//   feedback.offer(digit, dataUrl);  // after each prediction; feedback.hide() when cleared
(function () {
  "use strict";

  window.BoardFeedback = function (helpers) {
    var getJson = helpers.getJson;
    var showIn = helpers.showIn;  // board.js's: a status line's text and kind
    var feedbackBox = document.getElementById("feedback");
    var confirmButton = document.getElementById("confirm");
    var confirmDigit = document.getElementById("confirm-digit");
    var feedbackStatus = document.getElementById("feedback-status");
    var FEEDBACK_POLL_MS = 2000;  // waiting for a model that trained on the user's example
    var FEEDBACK_PATIENCE_MS = 10 * 60 * 1000;
    var lastDrawing = null;  // the data URL that was predicted: feedback labels exactly that

    var feedbackButtons = Array.prototype.slice.call(feedbackBox.querySelectorAll("button"));
    var feedbackToken = 0;  // a newer feedback supersedes the wait for an older one

    function showFeedbackStatus(text, kind) {
      showIn(feedbackStatus, text, kind);
    }

    function setFeedbackEnabled(enabled) {
      feedbackButtons.forEach(function (b) { b.disabled = !enabled; });
    }

    function offerFeedback(predicted, drawing) {
      lastDrawing = drawing;
      confirmButton.dataset.digit = String(predicted);
      confirmDigit.textContent = String(predicted);
      feedbackButtons.forEach(function (b) {
        b.classList.toggle("predicted", b.classList.contains("pick") &&
          b.dataset.digit === String(predicted));
      });
      setFeedbackEnabled(true);
      // a new drawing: what was said about the previous one's feedback no longer applies
      feedbackToken++;
      showFeedbackStatus("");
      delete feedbackBox.dataset.feedbackId;
      delete feedbackBox.dataset.includedIn;
      feedbackBox.hidden = false;
    }

    function hideFeedback() {
      feedbackBox.hidden = true;
      lastDrawing = null;
    }

    function sendFeedback(label) {
      if (!lastDrawing) return;
      setFeedbackEnabled(false);
      var token = ++feedbackToken;
      showFeedbackStatus("Sending “" + label + "” to the training stream…");
      getJson("api/feedback", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ imgStr: lastDrawing, label: label })
      })
        .then(function (answer) {
          if (token !== feedbackToken) return;
          if (!answer.success) {
            setFeedbackEnabled(true);
            showFeedbackStatus(answer.error || "feedback failed", "error");
            return;
          }
          feedbackBox.dataset.feedbackId = answer.id;
          showFeedbackStatus("Sent as a " + label + ". Waiting for the training job to learn it " +
            "(a new model is backed up every few seconds)…");
          waitForModel(answer.id, token, performance.now());
        })
        .catch(function (error) {
          if (token !== feedbackToken) return;
          setFeedbackEnabled(true);
          showFeedbackStatus("The server cannot be reached: " + error, "error");
        });
    }

    function waitForModel(id, token, started) {
      if (token !== feedbackToken) return;
      getJson("api/feedback/" + encodeURIComponent(id))
        .then(function (status) {
          if (token !== feedbackToken) return;
          if (status.success && status.included) {
            showFeedbackStatus("Model v" + status.model_version + " includes your example.", "good");
            feedbackBox.dataset.includedIn = String(status.model_version);
            helpers.onIncluded();
            return;
          }
          var waited = performance.now() - started;
          if (waited > FEEDBACK_PATIENCE_MS) {
            showFeedbackStatus("Your example is in Kafka, but no model has included it yet: " +
              "is the training job running?", "warn");
            return;
          }
          if (waited > 60000) {
            showFeedbackStatus("Still waiting for a model that includes your example " +
              "(newest: v" + (status.newest_version || "–") + "). Is the training job running?",
              "warn");
          }
          window.setTimeout(function () { waitForModel(id, token, started); }, FEEDBACK_POLL_MS);
        })
        .catch(function () {
          window.setTimeout(function () { waitForModel(id, token, started); }, FEEDBACK_POLL_MS);
        });
    }

    confirmButton.addEventListener("click", function () {
      sendFeedback(parseInt(confirmButton.dataset.digit, 10));
    });
    feedbackButtons.forEach(function (b) {
      if (b.classList.contains("pick")) {
        b.addEventListener("click", function () { sendFeedback(parseInt(b.dataset.digit, 10)); });
      }
    });

    return { offer: offerFeedback, hide: hideFeedback, send: sendFeedback };
  };
}());
