"""bench/teaching.py's widest-based 1s (online_ml/harness/mouse_digits.py, ``ones_by_base``: read
2 by the model, bench/strokes.py) taught as 1s: ordinary steps repeated, or the share once; the
other drawings of that base read again (the table "teaching the widest-based 1s").

Run through ``python bench/teaching.py`` (not on its own).
"""
from __future__ import annotations

import copy
import random
from typing import Any

import numpy as np

from online_ml import evaluation as ev
from online_ml.learner import OnlineLearner


def teach_rows(model, p: Any, share: float) -> list[dict]:
    """The widest-based 1s taught: ordinary steps repeated, then the share, once."""
    from sklearn.datasets import load_digits

    from online_ml.harness.mouse_digits import ones_by_base

    ones = ones_by_base()
    widest = max(o["width"] for o in ones)
    picked = [i for i, o in enumerate(ones) if o["width"] == widest]
    pool = [i for i in picked if ones[i]["strokes"] == "two" and ones[i]["form"] == "board"]
    teach = random.Random(1).sample(pool, p.taught)
    held = [i for i in picked if i not in pool]
    x = ev.stroke_features(ones[i]["svg"] for i in teach + held)
    x_teach, x_held = np.rint(x[:p.taught]).astype(int).tolist(), x[p.taught:]
    digits = load_digits()
    mouse_svgs, mouse_y, _ = ev.mouse_drawings()
    mouse_x = ev.stroke_features(mouse_svgs)

    def row(name: str, learned: int, m) -> dict:
        iterate = None
        if hasattr(m, "weights_") and getattr(m, "average", 0):
            z = m.decision_function(x_held, averaged=False)
            iterate = float((m.classes_[z.argmax(axis=1)] == 1).mean())
        return {"teaching": name, "feedback": learned,
                "served": float((m.predict(x_held) == 1).mean()), "iterate": iterate,
                "digits": float((m.predict(digits.data) == digits.target).mean()),
                "mouse": float((m.predict(mouse_x) == np.asarray(mouse_y)).mean())}

    def taught(sent: list, step: float) -> OnlineLearner:
        learner = OnlineLearner(copy.deepcopy(model))
        for xi in sent:
            learner.learn_one(xi, 1, served=step)
        return learner

    rows = []
    for repeats in p.repeats:
        learner = taught(x_teach * repeats, 0.0)
        rows.append(row(f"share 0: {p.taught} drawings, each sent {repeats}x" if repeats
                        else "not taught", p.taught * repeats, learner.model))
    for step in sorted({share, 1.0} - {0.0}):
        for n in (1, 2, p.taught):
            rows.append(row(f"share {step:g}: {n} drawing(s) sent once", n,
                            taught(x_teach[:n], step).model))
    for sent, step in (([], 0.0), (x_teach, 0.0), (x_teach[:1], share)):
        learner = taught(sent, step)
        rows.append(row(f"share {step:g}: {len(sent)} sent once, then one more pass of the stream"
                        if sent else "not taught, then one more pass of the stream", len(sent),
                        one_more_pass(learner)))
    return rows


def one_more_pass(learner: OnlineLearner):
    """The learner's model after one more pass of the default stream (another shuffle)."""
    from online_ml.producer import iter_records

    for xs, y in iter_records(seed=9, epochs=1):
        learner.learn_one(xs, y)
    return learner.model


TEACH_COLUMNS = [("teaching the widest-based 1s (drawn on the board)", "teaching", ""),
                 ("feedback records", "feedback", "d"),
                 ("their other drawings read 1: served model", "served", ".3f"),
                 ("last iterate (softmax)", "iterate", ".3f"),
                 ("served model on digits", "digits", ".4f"), ("on the mouse set", "mouse", ".3f")]
