"""Candidates against the widest flagged 1s: settings of the default learner, and the learner
without its memory of the nearest records, each measured where the served model's weak point is —
a 1 with a flag and a base over half its height, which the served model reads as 2 half of the
time (bench/strokes.py).

No services, about two minutes here. None of these is served; the test split is not looked at.

* Each candidate is trained as the job trains (``evaluation.stream_model``: three passes of the
  default stream, record by record) with the job's ``LEARNER_PARAMS`` changed as named (among
  them training-time augmentation, ``augment``: none or two variants of each record; the served
  model learns one; and ``augment_stroke``: the variants' strokes also thinner or thicker, the
  "stroke width" variants issue 10 names, which the served model does not learn).
* ``without mirrored 1s``: ``mirrored`` [], each 1 of the stream learned as it is only (the
  served model also learns and remembers its mirror image, with a base under its stem:
  online_ml/augment.py); ``the plain mirror``: ``mirror_base`` 0, the mirror without the base.
* ``without its memory of records``: ``neighbours`` 0, the plain softmax (the default until
  2026-12-03; the served model's scores are its log-probabilities plus twice the share of the 9
  nearest of the last 2,048 records it learned that carry each label; online_ml/nearest.py); and
  those three numbers a step either way.
* Scored on real handwriting's development split (bitmaps, both forms, by the views the server
  would score them by with that model: both averaged, or one; column ``views``; and the same
  digits traced into strokes, ``handwriting.TRACED``, through the board's path), on our mouse set
  through the server's stroke path, and on the 1s by their base
  (online_ml/harness/mouse_digits.py, ``ones_by_base``) with a flag: the share read as 1 with a
  base 0.41 and 0.55 of the stem's height, and without a flag at any base.
* "Ahead on dev" means beyond chance, as the server's view rules and the width rule ask: of the
  dev drawings the two answer differently, the candidate reads more right than the served model
  by over ``common.PAIRED_Z`` standard deviations (McNemar's, columns "against the served
  model"), on bitmaps or on strokes, and is not behind beyond chance on the other.

    python bench/candidates.py [--markdown] [--smoke]
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Any

import common
import numpy as np

from online_ml import evaluation as ev
from online_ml import uncertainty as unc
from online_ml.config import Settings
from online_ml.handwriting import FORMS, TRACED, drawing, load_mnist, split
from online_ml.producer import load_dataset

#: name -> changes to the job's LEARNER_PARAMS
CANDIDATES: dict[str, dict[str, Any]] = {
    "served (the job's parameters)": {},
    "l2 3e-3": {"l2": 3e-3},
    "l2 3e-4": {"l2": 3e-4},
    "learning_rate 0.25": {"learning_rate": 0.25},
    "learning_rate 1": {"learning_rate": 1.0},
    "average 0.15": {"average": 0.15},
    "average 0.6": {"average": 0.6},
    "kernel_gamma 0.07": {"kernel_gamma": 0.07},
    "kernel_gamma 0.14": {"kernel_gamma": 0.14},
    "1,024 random features": {"kernel_features": 1024},
    "2,048 random features": {"kernel_features": 2048},
    "neighbours 5 (served 9)": {"neighbours": 5},
    "neighbours 15": {"neighbours": 15},
    "votes 1 (served 2)": {"votes": 1.0},
    "votes 3": {"votes": 3.0},
    "memory 1,024 records (served 2,048)": {"memory": 1024},
    "memory 4,096 records": {"memory": 4096},
    "no affine variants, the records alone (augment 0, served 1)": {"augment": 0},
    "two affine variants of each record (augment 2)": {"augment": 2},
    "variants with thinner or thicker strokes (augment_stroke 0.15)": {"augment_stroke": 0.15},
    "variants with thinner or thicker strokes (augment_stroke 0.25)": {"augment_stroke": 0.25},
    "served without its memory of records (neighbours 0)": {"neighbours": 0},
    "without mirrored 1s (mirrored [], served [1]; the default until 2026-12-04)": {"mirrored": []},
    "the plain mirror, no base under it (mirror_base 0, served 16; the default until 2026-12-05)":
        {"mirror_base": 0.0},
}
SMOKE = ("served (the job's parameters)", "l2 3e-3",
         "no affine variants, the records alone (augment 0, served 1)",
         "served without its memory of records (neighbours 0)",
         "without mirrored 1s (mirrored [], served [1]; the default until 2026-12-04)")
#: The bases whose flagged 1s the softmax without its memory misses (width over the stem's height).
WIDE = (0.41, 0.55)


@dataclass
class Params:
    epochs: int = 3
    dev: int | None = None  # drawings of the development split (None: all 2,500)
    candidates: tuple[str, ...] = tuple(CANDIDATES)

    @classmethod
    def smoke(cls) -> Params:
        return cls(epochs=1, dev=60, candidates=SMOKE)


def _sets(p: Params) -> dict[str, Any]:
    from online_ml.harness.mouse_digits import ones_by_base

    _, labels = load_mnist()
    dev, _ = split(labels, 0)  # bench/handwriting.py's split; its test half is not used here
    dev = dev[:p.dev] if p.dev else dev
    views = {}
    for f in FORMS:
        inks = ev.drawing_inks([drawing(i, f)[0] for i in dev])
        views[f] = [ev.features_of(inks, v) for v in ev.BITMAP_VIEWS]
    traced = ev.stroke_features(drawing(i, TRACED)[0] for i in dev)  # the board's path
    svgs, mouse_y, _ = ev.mouse_drawings()
    ones = ones_by_base()
    return {"dev_y": labels[dev], "dev": views, "traced": traced,
            "mouse_x": ev.stroke_features(svgs),
            "mouse_y": mouse_y, "ones_x": ev.stroke_features(o["svg"] for o in ones),
            "ones_width": np.array([round(o["width"], 2) for o in ones]),
            "ones_flag": np.array([o["flag"] for o in ones])}


def _row(name: str, model, sets: dict) -> tuple[dict, dict[str, np.ndarray]]:
    """One candidate's answers, each drawing scored as the server would score it with this model
    (a bitmap by both views or one: ``uncertainty.served_views``; strokes by one), and which dev
    drawings it reads right (bitmaps of both forms, traced strokes), to pair with the served
    model's, and which of the 1s by base it reads 1 (``ones``)."""
    score = model.decision_function
    views = len(unc.served_views(model, np.zeros((len(ev.BITMAP_VIEWS), 1))))
    right = [np.mean([score(v) for v in sets["dev"][f][:views]], axis=0).argmax(1) == sets["dev_y"]
             for f in FORMS]
    ones = score(sets["ones_x"]).argmax(1) == 1
    flag, width = sets["ones_flag"], sets["ones_width"]
    traced = score(sets["traced"]).argmax(1) == sets["dev_y"]
    row = {"candidate": name, "views": views,
           "dev": float(np.mean([r.mean() for r in right])), "traced": float(traced.mean()),
           "mouse": int((score(sets["mouse_x"]).argmax(1) == sets["mouse_y"]).sum()),
           "plain": float(ones[~flag].mean())}
    for w in WIDE:
        row[f"flag_{w}"] = float(ones[flag & (width == w)].mean())
    return row, {"dev": np.concatenate(right), "traced": traced, "ones": ones}


#: The columns of a model scored by :func:`_row` on dev and the mouse set, each paired with the
#: served model (bench/mirrored.py's table has them too).
DEV_COLUMNS = [("dev, bitmaps", "dev", ".4f"), ("bitmaps, against the served model", "paired", ""),
               ("dev, traced strokes", "traced", ".4f"),
               ("strokes, against the served model", "paired_traced", ""),
               ("mouse set right (of 42)", "mouse", "d")]
COLUMNS = [("candidate (none served)", "candidate", ""), ("views", "views", "d"), *DEV_COLUMNS,
           *[(f"flagged, base {w} of the height: read 1", f"flag_{w}", ".3f") for w in WIDE],
           ("no flag, any base: read 1", "plain", ".3f"),
           ("learning, µs a record", "us", ".0f")]


def run(p: Params, smoke: bool = False, quiet: bool = False) -> dict:
    started = time.time()
    machine = common.machine_info()
    common.progress("candidates: features of the development split, the mouse set, the 1s by base")
    sets = _sets(p)
    base = Settings.from_env().learner_kwargs()
    ev.stream_model(1, 0, params=base, limit=50)  # compile the steps before timing
    rows, rights = [], []
    for name in p.candidates:
        common.progress(f"candidates: {name}")
        cpu = time.process_time()
        model = ev.stream_model(p.epochs, 0, params={**base, **CANDIDATES[name]})
        cpu = time.process_time() - cpu
        row, right = _row(name, model, sets)
        rows.append({**row, "us": cpu / (p.epochs * len(load_dataset()[1])) * 1e6})
        rights.append(right)
    served = rows[0]
    for key, name in (("dev", ""), ("traced", "_traced")):
        served["paired" + name], served["z" + name] = "-", 0.0
        for row, right in zip(rows[1:], rights[1:]):  # McNemar's on the same dev drawings
            gained, lost, z = common.paired(right[key], rights[0][key])
            row["paired" + name] = f"{gained} gained, {lost} lost, z {z:.2f}"
            row["z" + name] = round(z, 2)

    def flagged(r: dict) -> float:
        return sum(r[f"flag_{w}"] for w in WIDE)

    def ahead(r: dict) -> bool:
        """Ahead on dev beyond chance (as the view and width rules ask) on bitmaps or on traced
        strokes, and not behind beyond chance on the other."""
        zs = (r["z"], r["z_traced"])
        return max(zs) > common.PAIRED_Z and min(zs) >= -common.PAIRED_Z

    both = [r["candidate"] for r in rows[1:] if ahead(r) and flagged(r) > flagged(served)]
    verdict = ("ahead of the served model on dev beyond chance and on the flagged 1s: "
               + (", ".join(both) if both else "none"))
    keeps = [r for r in rows[1:] if ahead(r) and r["mouse"] >= served["mouse"]
             and all(r[k] >= served[k] for k in ("plain", *(f"flag_{w}" for w in WIDE)))]
    verdict += ("; ahead on dev beyond chance and reading no fewer mouse drawings and 1s: "
                + (", ".join(f"{r['candidate']} (bitmaps {100 * (r['dev'] - served['dev']):+.2f} "
                             f"points, z {r['z']:.2f}; strokes "
                             f"{100 * (r['traced'] - served['traced']):+.2f}, z {r['z_traced']:.2f}; "
                             f"learning in {r['us'] / served['us']:.1f}x the served model's time)"
                             for r in keeps) if keeps else "none"))
    all_wide = [r["candidate"] for r in rows if r[f"flag_{WIDE[-1]}"] == 1.0]
    verdict += ("; every flagged 1 at the widest base read 1 by: "
                + (", ".join(all_wide) if all_wide else "none"))
    targets = [common.target("flagged 1s read 1 at the widest base, best candidate",
                             max(r[f"flag_{WIDE[-1]}"] for r in rows), 1.0, ">=", verdict)]
    return common.finish_verdict(
        "candidates", "candidates against the widest flagged 1s (development split, mouse set, "
        "1s by base)", COLUMNS, rows, verdict, targets, dict(vars(p)), machine, started, smoke,
        quiet)


def main() -> int:
    return common.offline_main(__doc__, run, Params, [(COLUMNS, "rows")])


if __name__ == "__main__":
    sys.exit(main())
