"""Drawn strokes, offline: why the serving benchmark's stroke templates score what they score, and
how a "1" with both a flag and a base is read.

No services, about a minute.

* Templates: the drawings bench/serving.py posts (online_ml/harness/drawings.py, 40 drawings, seed
  7) through the features of the 95 % run (one pen, long side, centred by the box, no deskew: the
  code of that run gives the same 64 values) and today's served features, each scored by ``models``
  models trained the way bench/serving.py trains its model (online_ml/evaluation.py,
  ``batch_model``) with SGD's ``random_state`` 0, 1, ... — that benchmark left it unset, so each
  of its runs served another of these models; it now serves the first (``random_state`` 0).
* A "1" with a flag and a base: 48 drawings (online_ml/harness/mouse_digits.py,
  ``flagged_based_ones``: three flags, four bases, three boards and a cropped form), answered by the
  model a user gets (``stream_model``: LEARNER and LEARNER_PARAMS as set), by the serving
  benchmark's models, by LEARNER=sgd (the default until 2026-12-01) trained on the same stream, by
  the 5 nearest ``digits`` images (is the drawing, as features, among digits' 1s?) and by three
  learners fitted offline on all of ``digits`` (RBF SVM, MLP, extra trees: what the data teaches
  whatever the learner; none is served).
* 1s by their base (``ones_by_base``: none, a foot, a base of four widths in one stroke or two,
  with and without a flag): which the user's model reads as 1, whether the board says it is
  unsure of the rest (bench/teaching.py: what teaching it them as feedback changes), and which
  flagged ones the offline learners read as 1.
* What ``digits`` 1s look like: how many have a base or a flag, their ink and stem.
* A thicker pen (the ink a drawing's pen is fitted to raised from ``features.INK_RANGE``'s floor
  to ``PEN_FLOORS``: a thicker stem, as ``digits``' 1s have), for the user's model trained on
  ``orders`` orders of the stream (the producer's seeds 0, 1, ...): the 1s by base and the flagged
  and based 1s read 1, the mouse set, and real handwriting traced into strokes (the development
  split, paired with the served pen on the same drawings, McNemar's z). Why a thicker pen is not
  served: it reads every 1 for some orders only, and costs the traced handwriting.

    python bench/strokes.py [--markdown]
"""
from __future__ import annotations

import contextlib
import sys
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import common
import numpy as np

from online_ml import evaluation as ev
from online_ml.config import JOB_LEARNER_PARAMS
from online_ml.drawing_input import decode_data_url
from online_ml.features import strokes_to_features
from online_ml.harness.drawings import drawings
from online_ml.harness.mouse_digits import flagged_based_ones
from online_ml.svg_render import SvgDrawing

#: Feature paths compared on the templates: keyword arguments of ``strokes_to_features``.
TEMPLATE_VARIANTS = {
    "one pen, long side, centred by the box, no deskew (the 95 % run)":
        {"fit_ink": False, "centre": "box", "fit": "long side", "deskew": False},
    "served without deskewing": {"deskew": False},
    "served": {},
}


@dataclass
class Params:
    models: int = 40  # serving benchmark's models (random_state 0..models-1)
    drawings: int = 40  # as bench/serving.py
    seed: int = 7
    epochs: int = 3  # the user's model (stream_model)
    orders: int = 5  # stream orders (producer seeds 0..orders-1) of the thicker-pen section
    dev: int | None = None  # traced development drawings there (None: all 2,500)

    @classmethod
    def smoke(cls) -> Params:
        return cls(models=2, drawings=10, epochs=1, orders=1, dev=40)


#: The pen's ink floors the thicker-pen section tries (the served floor is ``INK_RANGE[0]``, aimed
#: ``INK_AIM`` inside): 325, the lowest that read every 1 here for the first stream order
#: (ad hoc, 2026-12-04, floors 290..340), and 340.
PEN_FLOORS = (325.0, 340.0)


def _template_rows(p: Params, models: list) -> list[dict]:
    samples = drawings(p.drawings, p.seed)
    svgs = [decode_data_url(urllib.parse.parse_qs(body.decode())["imgStr"][0]) for _, body in samples]
    y = np.array([d for d, _ in samples])
    rows = []
    for name, options in TEMPLATE_VARIANTS.items():
        x = np.array([strokes_to_features(SvgDrawing(raw), **options) for raw in svgs])
        acc = [float((m.predict(x) == y).mean()) for m in models]
        missed = np.zeros(10, dtype=int)
        for m in models:
            np.add.at(missed, y[m.predict(x) != y], 1)
        rows.append({"features": name, "models": len(models), "mean": float(np.mean(acc)),
                     "min": min(acc), "max": max(acc),
                     "missed": ", ".join(f"{d}: {n}/{len(models) * int((y == d).sum())}"
                                         for d, n in enumerate(missed) if n)})
    return rows


def offline_learners() -> dict[str, Any]:
    """Learners fitted offline on all of ``digits`` (not online, not served): what the data can
    teach about a 1's base whatever the learner. Their parameters were picked ad hoc on real
    handwriting's development split (SVM: gamma 0.0005 of 0.0005/0.001/0.003; MLP: 256 units with
    alpha 1 over 100 with 1e-4; extra trees over a random forest of 300), not to read these 1s."""
    from sklearn.datasets import load_digits
    from sklearn.ensemble import ExtraTreesClassifier
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.neural_network import MLPClassifier
    from sklearn.svm import SVC

    digits = load_digits()
    learners = {"5 nearest digits images": KNeighborsClassifier(5),
                "RBF SVM on all of digits (offline)": SVC(gamma=0.0005, C=10),
                "MLP, 256 hidden units, on all of digits (offline)":
                    MLPClassifier((256,), alpha=1.0, max_iter=500, random_state=0),
                "extra trees (300) on all of digits (offline)": ExtraTreesClassifier(300, random_state=0)}
    return {name: m.fit(digits.data, digits.target) for name, m in learners.items()}


def _ones_rows(user_model, models: list, sgd_model, offline: dict) -> tuple[list[dict], dict]:
    family = flagged_based_ones()
    x = np.array([strokes_to_features(SvgDrawing(svg.encode())) for _, _, svg in family])
    forms = np.array([form for form, _, _ in family])
    mouse_svgs, _, names = ev.mouse_drawings()
    mouse = ev.stroke_features([mouse_svgs[names.index("flag and base")]])
    readers = [("the user's model (stream_model)", [user_model]),
               ("serving benchmark's model" if len(models) == 1 else
                f"serving benchmark's models (random_state 0..{len(models) - 1})", models),
               ("LEARNER=sgd (the default until 2026-12-01) on the user's stream", [sgd_model]),
               *[(name, [m]) for name, m in offline.items()]]
    rows = []
    for name, ms in readers:
        answers = [m.predict(x) for m in ms]
        share = {f: float(np.mean([(a[forms == f] == 1).mean() for a in answers]))
                 for f in ("board", "cropped")}
        row = {"reader": name, **share,
               "all": float(np.mean([(a == 1).mean() for a in answers])),
               "mouse": _answers([int(m.predict(mouse)[0]) for m in ms])}
        rows.append(row)
    return rows, {"n": len(family)}


def _base_rows(user_model, offline: dict) -> list[dict]:
    """1s by their base (online_ml/harness/mouse_digits.py, ``ones_by_base``: none, a foot in the
    stem's stroke, a base as a second stroke or in the stem's stroke; each with and without
    every flag, on three boards and cropped), answered by the model a user gets as the server
    answers: the share read as 1 without a flag and with one, and of the misses how many the
    board calls "not sure" (the served calibration's threshold)."""
    from online_ml.harness.mouse_digits import ones_by_base
    from online_ml.uncertainty import calibration, verdict, view_probabilities

    fitted = calibration(user_model)
    groups: dict[tuple, list[tuple[bool, bool, bool]]] = {}
    ones = ones_by_base()
    features = ev.stroke_features(one["svg"] for one in ones)
    # with a flag, the share read as 1 by each learner fitted offline on all of digits
    offline_ones = [m.predict(features) == 1 for m in offline.values()]
    for one, row in zip(ones, features):
        x = row[None, :]
        proba = view_probabilities(user_model, x, fitted.temperature)
        if proba is None:
            right, unsure = bool(user_model.predict(x)[0] == 1), False
        else:
            right = bool(user_model.classes_[proba[0].argmax()] == 1)
            unsure = not verdict(proba[0], user_model.classes_, fitted.threshold)["sure"]
        key = (one["base"], one["strokes"], one["width"])
        groups.setdefault(key, []).append((one["flag"], right, unsure))
    flagged_of: dict[tuple, list[int]] = {}
    for i, one in enumerate(ones):
        if one["flag"]:
            flagged_of.setdefault((one["base"], one["strokes"], one["width"]), []).append(i)
    by_offline = {key: [float(read[picked].mean()) for read in offline_ones]
                  for key, picked in flagged_of.items()}
    rows = []
    for (base, strokes, width), seen in sorted(groups.items(), key=lambda kv: (kv[0][2], kv[0][1])):
        plain = [r for flag, r, _ in seen if not flag]
        flagged = [r for flag, r, _ in seen if flag]
        misses = [unsure for _, r, unsure in seen if not r]
        rows.append({"base": base, "strokes": strokes, "width": width,
                     "plain": float(np.mean(plain)), "flagged": float(np.mean(flagged)),
                     "n": len(seen), "offline": by_offline[base, strokes, width],
                     "offline_text": " / ".join(f"{v:.2f}" for v in by_offline[base, strokes, width]),
                     "unsure": f"{sum(misses)} of {len(misses)}" if misses else "-"})
    return rows


@contextlib.contextmanager
def _ink_floor(floor: float | None) -> Iterator[None]:
    """The server's pen fitted to at least ``floor`` ink (aimed at it exactly) for a while
    (``features.INK_RANGE``'s floor and ``INK_AIM``, restored after); None: the served pen."""
    from online_ml import features

    saved = features.INK_RANGE, features.INK_AIM
    if floor is not None:
        features.INK_RANGE, features.INK_AIM = (floor, saved[0][1]), 0.0
    try:
        yield
    finally:
        features.INK_RANGE, features.INK_AIM = saved


def _pen_rows(p: Params) -> list[dict]:
    """The thicker-pen section (module docstring): one row per pen and stream order."""
    from online_ml.handwriting import TRACED, drawing, load_mnist, split
    from online_ml.harness.mouse_digits import ones_by_base

    _, labels = load_mnist()
    dev, _ = split(labels, 0)  # bench/handwriting.py's split; its test half is not used here
    dev = dev[:p.dev] if p.dev else dev
    mouse_svgs, mouse_y, _ = ev.mouse_drawings()
    svgs = {"traced": [drawing(i, TRACED)[0] for i in dev],
            "ones": [o["svg"] for o in ones_by_base()],
            "family": [svg for _, _, svg in flagged_based_ones()],
            "mouse": mouse_svgs}
    truth = {"traced": labels[dev], "mouse": mouse_y}
    from online_ml.features import INK_AIM, INK_RANGE

    pens: dict[str, float | None] = {
        f"served (ink floor {INK_RANGE[0]:.0f}, aimed {INK_AIM:.0f} inside)": None,
        **{f"ink floor {floor:.0f}": floor for floor in PEN_FLOORS}}
    feats = {}
    for pen, floor in pens.items():
        with _ink_floor(floor):
            feats[pen] = {k: ev.stroke_features(v) for k, v in svgs.items()}
    rows = []
    for order in range(p.orders):
        model = ev.stream_model(p.epochs, order)
        served = None
        for pen, x in feats.items():
            answers = {k: model.predict(v) for k, v in x.items()}
            right = answers["traced"] == truth["traced"]
            served = right if served is None else served
            gained, lost, z = common.paired(right, served)
            rows.append({"pen": pen, "order": order,
                         "ones": int((answers["ones"] == 1).sum()), "n_ones": len(answers["ones"]),
                         "family": int((answers["family"] == 1).sum()),
                         "n_family": len(answers["family"]),
                         "mouse": int((answers["mouse"] == truth["mouse"]).sum()),
                         "traced": float(right.mean()),
                         "paired": "-" if pen.startswith("served") else
                         f"{gained} gained, {lost} lost, z {z:.2f}", "z": z})
    return rows


def _pen_verdict(rows: list[dict]) -> str:
    """Which pens read every 1 for every stream order, and what each costs the traced dev."""
    parts = []
    for pen in dict.fromkeys(r["pen"] for r in rows):
        mine = [r for r in rows if r["pen"] == pen]
        every = sum(r["ones"] == r["n_ones"] and r["family"] == r["n_family"] for r in mine)
        cost = (f"; traced dev {min(r['z'] for r in mine):.2f} to {max(r['z'] for r in mine):.2f} "
                "z against the served pen" if not pen.startswith("served") else "")
        parts.append(f"{pen}: every 1 read 1 for {every} of {len(mine)} stream orders{cost}")
    return "; ".join(parts)


def _answers(answers: list[int]) -> str:
    """One model's answer, or how many of several answer 1."""
    if len(answers) == 1:
        return str(answers[0])
    return f"1 for {answers.count(1)} of {len(answers)}"


def _digits_ones() -> dict:
    """How ``digits`` draws a 1: a base (a bottom row at least 4 blocks wide), a flag (ink in the
    top three rows at least 2 columns left of the stem), the ink, the stem's ink per row; and
    how many 2s have such a base."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    ones = digits.images[digits.target == 1]
    stem = ones[:, 3:6].sum(axis=1).argmax(axis=1)
    flag = np.array([c >= 2 and o[:3, :c - 1].max() >= 8 for o, c in zip(ones, stem)])
    base = (ones[:, 7] >= 8).sum(axis=1) >= 4
    ink = ones.sum(axis=(1, 2))
    stem_row = ones[:, 1:6].sum(axis=(1, 2)) / 5
    x = np.arange(8)
    base_cx = (ones[:, 7] * x).sum(axis=1) / np.maximum(ones[:, 7].sum(axis=1), 1)
    top_cx = (ones[:, :4].sum(axis=1) * x).sum(axis=1) / ones[:, :4].sum(axis=(1, 2))
    twos = digits.images[digits.target == 2]
    return {"n": len(ones), "base": int(base.sum()), "flag": int(flag.sum()),
            "twos": len(twos), "twos_base": int(((twos[:, 7] >= 8).sum(axis=1) >= 4).sum()),
            "flag_and_base": int((flag & base).sum()),
            "ink_base": float(ink[base].mean()), "ink_no_base": float(ink[~base].mean()),
            "stem_ink_per_row_base": float(stem_row[base].mean()),
            "stem_ink_per_row_no_base": float(stem_row[~base].mean()),
            "base_right_of_stem_top": float((base_cx - top_cx)[base].mean())}


TEMPLATE_COLUMNS = [("features (templates of bench/serving.py)", "features", ""), ("models", "models", "d"),
                    ("recognised, mean", "mean", ".3f"), ("min", "min", ".3f"), ("max", "max", ".3f"),
                    ("missed (digit: misses/drawings)", "missed", "")]
ONES_COLUMNS = [("1 with a flag and a base, read by", "reader", ""), ("board", "board", ".3f"),
                ("cropped", "cropped", ".3f"), ("all", "all", ".3f"),
                ("the mouse set's drawing", "mouse", "")]
BASE_COLUMNS = [("a 1's base (100x100 box, stem 6..94)", "base", ""), ("strokes", "strokes", ""),
                ("width / stem's height", "width", ".2f"), ("drawings", "n", "d"),
                ("answered 1, no flag", "plain", ".3f"), ("with a flag", "flagged", ".3f"),
                ("misses the board calls not sure", "unsure", ""),
                ("with a flag, fitted offline on all of digits: 5-NN / SVM / MLP / trees",
                 "offline_text", "")]
DIGITS_COLUMNS = [("digits 1s", "what", ""), ("value", "value", "")]
PEN_COLUMNS = [("pen (ink a drawing is fitted to)", "pen", ""), ("stream order", "order", "d"),
               ("1s by base read 1", "ones", "d"), ("of", "n_ones", "d"),
               ("flagged and based 1s read 1", "family", "d"), ("of", "n_family", "d"),
               ("mouse set right (of 42)", "mouse", "d"), ("dev, traced strokes", "traced", ".4f"),
               ("against the served pen", "paired", "")]


def run(p: Params, smoke: bool = False, quiet: bool = False) -> dict:
    started = time.time()
    machine = common.machine_info()
    common.progress(f"strokes: training {p.models} models as bench/serving.py does, and the user's")
    models = [ev.batch_model(random_state=0)]
    if hasattr(models[0], "random_state"):  # SGD: one model per random state; softmax: one model
        models += [ev.batch_model(random_state=r) for r in range(1, p.models)]
    user_model = ev.stream_model(p.epochs, 0)
    sgd_model = ev.stream_model(p.epochs, 0, learner="sgd",
                                 params=JOB_LEARNER_PARAMS["sgd"])
    templates = _template_rows(p, models)
    offline = offline_learners()
    ones, info = _ones_rows(user_model, models, sgd_model, offline)
    bases = _base_rows(user_model, offline)
    facts = _digits_ones()
    common.progress(f"strokes: a thicker pen, {p.orders} stream orders")
    pens = _pen_rows(p)
    pen_verdict = _pen_verdict(pens)
    digits_rows = [
        {"what": "with a base / a flag / both", "value": f"{facts['base']} / {facts['flag']} / "
                                                          f"{facts['flag_and_base']} of {facts['n']}"},
        {"what": "2s with such a bottom row", "value": f"{facts['twos_base']} of {facts['twos']}"},
        {"what": "ink with a base / without",
         "value": f"{facts['ink_base']:.0f} / {facts['ink_no_base']:.0f}"},
        {"what": "stem ink per row (rows 1-5) with a base / without",
         "value": f"{facts['stem_ink_per_row_base']:.1f} / {facts['stem_ink_per_row_no_base']:.1f}"},
        {"what": "base's centre right of the stem's top (columns)",
         "value": f"{facts['base_right_of_stem_top']:.2f}"}]
    before, served = templates[0], templates[-1]
    user = ones[0]
    knn = next(r for r in ones if r["reader"] == "5 nearest digits images")
    widest = max(r["width"] for r in bases)
    targets = [
        common.target("templates: served - 95 % run's features (mean recognised, points)",
                      round(100 * (served["mean"] - before["mean"]), 1), 0, ">=",
                      f"{served['mean']:.3f} vs {before['mean']:.3f}"),
        common.target("flagged and based 1s among digits' 1s (5 nearest)", round(knn["all"], 3), 0.9, ">=",
                      f"of {info['n']}"),
        common.target("flagged and based 1s answered 1 (the user's model)", round(user["all"], 3), 1.0, ">=",
                      f"mouse set's: {user['mouse']}"),
    ]
    fixes = [pen for pen in dict.fromkeys(r["pen"] for r in pens) if not pen.startswith("served")
             and all(r["ones"] == r["n_ones"] and r["family"] == r["n_family"]
                     and r["z"] > -common.PAIRED_Z for r in pens if r["pen"] == pen)]
    targets.append(common.target(
        "thicker pens reading every 1 for every stream order, traced dev not behind beyond chance",
        len(fixes), 1, ">=", pen_verdict))
    wide = [r for r in bases if r["width"] == widest]
    limit = (f"the widest base ({widest:.2f} of the stem's height) with a flag: answered 1 by the "
             f"user's model {np.mean([r['flagged'] for r in wide]):.3f}, by the learners fitted "
             f"offline on all of digits {min(min(r['offline']) for r in wide):.3f} to "
             f"{max(max(r['offline']) for r in wide):.3f} (the same 1s without a flag: "
             f"{np.mean([r['plain'] for r in wide]):.3f})")
    text = "\n\n".join([
        common.table("the serving benchmark's templates, per feature path, over its possible models",
                     TEMPLATE_COLUMNS, templates),
        common.table(f"a 1 with a flag and a base ({info['n']} drawings): share answered 1",
                     ONES_COLUMNS, ones),
        common.table("1s by their base: share answered 1 by the user's model", BASE_COLUMNS, bases),
        limit,
        common.table("how digits draws a 1", DIGITS_COLUMNS, digits_rows),
        common.table("a thicker pen, per stream order", PEN_COLUMNS, pens),
        pen_verdict,
        common.targets_table(targets)])
    results = {"templates": templates, "ones": ones, "bases": bases, "digits_ones": facts, "limit": limit,
               "digits_rows": digits_rows, "pens": pens, "pen_verdict": pen_verdict}
    path = common.write_result("strokes", dict(vars(p)), results, targets, machine, started, smoke)
    out = common.finish(path, templates, targets, text, smoke, quiet)
    out["results"] = results
    return out


def main() -> int:
    return common.offline_main(__doc__, run, Params, [
        (TEMPLATE_COLUMNS, "templates"), (ONES_COLUMNS, "ones"), (BASE_COLUMNS, "bases"),
        (DIGITS_COLUMNS, "digits_rows"), (PEN_COLUMNS, "pens")])


if __name__ == "__main__":
    sys.exit(main())
