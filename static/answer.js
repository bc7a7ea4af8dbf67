// What the board shows of an answer besides its digit: the top probabilities, "not sure: a or b?",
// the 8x8 picture the model saw with the cells that pushed for and against the answer, and the
// remembered records that voted. static/board.js creates it and hands it each answer:
//   var answerView = window.BoardAnswer();
//   answerView.show(answer);  // the JSON of POST /predict with explain=1; answerView.clear()
(function () {
  "use strict";

  window.BoardAnswer = function () {
    var result = document.getElementById("result");
    var probabilities = document.getElementById("probabilities");
    var unsure = document.getElementById("unsure");
    var explainBox = document.getElementById("explain");

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

    // The server says when the model is unsure (online_ml/uncertainty.py): name the likely digits
    // and ask to be taught, instead of stating one digit with a confidence nobody can read.
    function showUnsure(answer) {
      var candidates = answer && answer.sure === false ? answer.candidates || [] : [];
      unsure.hidden = candidates.length < 2;
      unsure.textContent = unsure.hidden ? "" : "not sure: " + candidates.join(" or ") +
        "? Teach it: tell it below which digit it is.";
      result.classList.toggle("is-unsure", !unsure.hidden);
    }

    // What the model saw (the 64 features as grey levels) and, for the answer, which cells pushed
    // for it (green) or against it (red): what each cell added to the score, from the server (explain=1).
    function paintCells(canvas, values, colour) {
      var c = canvas.getContext("2d");
      var cell = canvas.width / 8;
      c.clearRect(0, 0, canvas.width, canvas.height);
      for (var i = 0; i < 64; i++) {
        c.fillStyle = colour(values[i]);
        c.fillRect((i % 8) * cell, Math.floor(i / 8) * cell, cell, cell);
      }
    }

    function grey(v) {
      var g = Math.round(255 - (255 * Math.min(16, Math.max(0, v))) / 16);
      return "rgb(" + g + "," + g + "," + g + ")";
    }

    // A model with a memory of records (the default learner's neighbours) says which remembered records
    // voted for its answer: each as an 8x8 picture with its digit. The same record remembered more than
    // once (a correction from this board is kept several times) is one picture, "7 ×9": its votes; a
    // correction (kept apart from the stream's records, the model's lessons) says "taught".
    function votersGrouped(voters) {
      var groups = [];
      var seen = {};
      voters.forEach(function (v) {
        var key = v.digit + ":" + (v.lesson ? "lesson:" : "") + v.features.join(",");
        if (seen[key] === undefined) {
          seen[key] = groups.length;
          groups.push({ digit: v.digit, features: v.features, votes: 0, lesson: !!v.lesson });
        }
        groups[seen[key]].votes += 1;
      });
      return groups;
    }

    function showVoters(answer) {
      var voters = votersGrouped((answer && answer.neighbours) || []);
      var box = document.getElementById("voters");
      var list = document.getElementById("voter-list");
      list.textContent = "";
      box.hidden = voters.length === 0;
      voters.forEach(function (v) {
        var item = document.createElement("div");
        var canvas = document.createElement("canvas");
        canvas.width = canvas.height = 32;
        paintCells(canvas, v.features, grey);
        item.appendChild(canvas);
        var text = v.digit + (v.votes > 1 ? " \u00d7" + v.votes : "") + (v.lesson ? " taught" : "");
        if (v.lesson) item.title = "a correction taught on this board";
        item.appendChild(document.createTextNode(text));
        list.appendChild(item);
      });
    }

    function showExplanation(answer) {
      showVoters(answer);
      var features = answer && answer.features;
      explainBox.hidden = !(features && features.length === 64);
      if (explainBox.hidden) return;
      paintCells(document.getElementById("seen"), features, grey);
      var pushed = document.getElementById("pushed");
      var contributions = answer.contributions;
      pushed.parentNode.hidden = !(contributions && contributions.length === 64);
      if (pushed.parentNode.hidden) return;
      var scale = Math.max.apply(null, contributions.map(Math.abs)) || 1;
      paintCells(pushed, contributions, function (v) {
        var a = Math.min(1, Math.abs(v) / scale).toFixed(3);
        return v >= 0 ? "rgba(26,127,55," + a + ")" : "rgba(207,34,46," + a + ")";
      });
      document.getElementById("explain-digit").textContent = String(answer.predict_result);
    }

    return {
      show: function (answer) {
        showProbabilities(answer.probabilities);
        showUnsure(answer);
        showExplanation(answer);
      },
      clear: function () {
        showUnsure(null);
        showExplanation(null);
        showProbabilities([]);
      }
    };
  };
}());
