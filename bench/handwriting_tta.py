"""bench/handwriting.py's test-time augmentation on bitmaps: what it costs a board drawing, and
the computed verdict whether it earns its place (the server scores a bitmap by both views, its
features and the same with the stroke width normalised, exactly when it does).
"""
from __future__ import annotations

import random

import common
import handwriting_strokes
import numpy as np

from online_ml import evaluation as ev
from online_ml import nearest
from online_ml import uncertainty as unc
from online_ml.features import bitmap_views
from online_ml.handwriting import FORMS

#: The ablation row and the cost step of test-time augmentation (what the server does to bitmaps).
TTA = "TTA: decision values averaged over served and served + stroke width (a bitmap's two views)"
TTA_COST = "features + scoring of a bitmap's two views (TTA)"
COST_COLUMNS = [("step of POST /predict", "step", ""), ("CPU ms per drawing (median of 5)", "ms", ".3f")]


def cost(model, n: int) -> list[dict]:
    """CPU per board drawing of what this benchmark changed in /predict: the features before and
    after (decode + render + normalise), and scoring with the model's predict_proba or with the
    calibrated probabilities and the sure rule. In-process, so ratios, not server latency."""
    from online_ml.drawing_input import decode_data_url
    from online_ml.harness.drawings import board_svg, svg_data_url
    from online_ml.svg_render import svg_ink

    rng = random.Random(11)
    urls = [svg_data_url(board_svg(i % 10, rng)) for i in range(n)]
    x = np.array([ev.ink_to_features(svg_ink(decode_data_url(u))) for u in urls])

    def per_item(fn) -> float:
        with nearest.as_the_server():  # this process learned: select as the server does
            return common.cpu_ms(lambda: [fn(i) for i in range(n)], n, 5)

    classes = model.classes_
    before, served = list(ev.STROKE_VARIANTS)[0], list(ev.STROKE_VARIANTS)[-1]
    return [
        {"step": f"features, {name}", "ms": per_item(
            lambda i, v=variant: ev.stroke_features([decode_data_url(urls[i]).decode()], v))}
        for name, variant in ((before, before), (served, served))
    ] + [
        {"step": "features, deskew + stroke width (a bitmap's second view)", "ms": per_item(
            lambda i: ev.ink_to_features(svg_ink(decode_data_url(urls[i])), width=True))},
    ] + [
        {"step": TTA_COST, "ms": per_item(
            lambda i: unc.view_probabilities(model, bitmap_views(svg_ink(decode_data_url(urls[i])))))},
        {"step": "scoring, model's predict_proba (before)",
         "ms": per_item(lambda i: model.predict_proba(x[i:i + 1]))},
        {"step": "scoring, calibrated probabilities + sure rule (served)",
         "ms": per_item(lambda i: unc.verdict(unc.probabilities(model, x[i:i + 1])[0], classes,
                                              unc.calibration(model).threshold))},
    ]


def verdict(ablation: list[dict], cost: list[dict], served: bool, learner_text: str,
            paired_dev: tuple[int, int, float]) -> dict:
    """Whether test-time augmentation earns its place on bitmaps, computed: it gains on the
    development split beyond chance (``paired_dev``: drawings gained, lost and McNemar's z of the
    two views against one, both forms), keeps the `digits` round trip of the one-view features
    and fits the serving benchmark's CPU budget per drawing (in-process features + scoring here).
    The target: the server scores bitmaps by both views (``uncertainty.BITMAP_VIEW_LEARNERS``) for
    this learner exactly when it does."""
    one = next(a for a in ablation if a["variant"] == ev.SERVED)
    tta = next(a for a in ablation if a["variant"] == TTA)
    gain = 100 * sum(tta[f"dev_{f}"] - one[f"dev_{f}"] for f in FORMS) / len(FORMS)
    ms = next(c["ms"] for c in cost if c["step"] == TTA_COST)
    checks = handwriting_strokes.tta_checks(paired_dev[2], tta["round_trip"] >= one["round_trip"],
                                            "the round trip", ms)
    failed = [name for name, ok in checks.items() if not ok]
    earns = not failed
    served_text = (f"{learner_text}: the server scores bitmaps by "
                   + ("both views" if served else "one view"))
    text = (f"test-time augmentation (bitmaps): dev {gain:+.2f} points ({paired_dev[0]} drawings "
            f"gained, {paired_dev[1]} lost, z {paired_dev[2]:.2f}), round trip "
            f"{tta['round_trip']:.3f} (one view: {one['round_trip']:.3f}), features + scoring "
            f"{ms:.2f} ms CPU per drawing (budget {common.SERVING_CPU_BUDGET_MS} ms): "
            + ("earns its place" if earns else "fails " + ", ".join(f"'{n}'" for n in failed))
            + f"; {served_text}"
            + ("" if earns == served else " (reconsider uncertainty.BITMAP_VIEW_LEARNERS)"))
    return {"dev_gain_points": round(gain, 2), "round_trip": tta["round_trip"],
            "served_round_trip": one["round_trip"], "cpu_ms": round(ms, 3),
            "earns_its_place_on_bitmaps": earns, "served": served, "text": text,
            "target": {**common.target("bitmaps scored by both views exactly when test-time "
                                       "augmentation earns its place", round(gain, 2), 0, ">=",
                                       "; ".join(f"{n}: {'yes' if ok else 'NO'}"
                                                 for n, ok in checks.items()) + f"; {served_text}"),
                       "met": earns == served}}
