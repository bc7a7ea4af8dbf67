"""Teaching the board: what one correction sent as feedback changes, and how much of its step goes
straight into the served weights (``FEEDBACK_STEP_SHARE``).

No services, about five minutes here. The model is the one a user gets
(``evaluation.stream_model``: the job's learner, three passes of the default stream); a correction
is learned as the job learns a feedback record (``OnlineLearner.learn_one``, its features rounded
as ``/api/feedback`` rounds them, ``served`` = the share).

* Corrections of real handwriting: a drawing of real handwriting traced into strokes (the board's
  path) that the model reads wrong is sent once with its label. Per share, and per number of
  records the correction counts as among the nearest (``feedback_copies``, ``COPIES``: kept among
  the lessons, searched that many times; the learners without a memory: once): how often that
  drawing is then read right, and how the model's accuracy on the other drawings of the split
  changed (mean and 5th percentile over the trials); beside it, what one wrong correction (a
  drawing read right taught another digit) costs the others instead. The development split
  chooses both — of the pairs whose mean change is not negative, the one that reads the most
  corrected drawings right (fewer copies, then the smaller share, on a tie): a correction shows as
  often as it can without costing other people's drawings on average, for a board whose user
  teaches it right — and the test split reports them. For a board open to others it also
  chooses the pair that helps the others most on average when one correction in ten is wrong
  (teaching_wrong.py, not served: a setting the README gives).
* Tried, not served: instead of a fixed share, the smallest share up to a cap that makes the
  served scores put the corrected label ahead by a margin (``SMALLEST``), on both splits.
* The same correction at parallelism 1, 2 and 4 (test split): the learner that got it and the
  others, each after ``SYNC_EVERY_RECORDS`` records, merged as the job merges them.
* How long a correction lasts (test split): the corrected drawing read again after more records
  of the stream (``Params.lasting``), kept once or ``feedback_copies`` times in the memory of
  records (a ring of ``memory`` records, so a correction's copies leave it after that many: the
  learner's way until 2026-12-04) and as the learner keeps it now, among its lessons (a ring of
  ``lessons`` corrections of their own, which the stream does not write over).
* Many corrections at once (test split, ``Params.many``): right ones and wrong ones (a drawing
  read right taught as another digit), kept each way; the other drawings' accuracy right after
  and after more of the stream, and whether the taught drawings still read as taught.
* Wrong corrections by count (test split): 1, one client's allowance in a window
  (``FEEDBACK_LIMIT``) and ``Params.many`` wrong corrections at once, kept as the learner keeps
  them and as one more record; the other drawings' change right after, over disjoint sets.
* The widest-based 1s (online_ml/harness/mouse_digits.py, ``ones_by_base``: read 2 by the model,
  bench/strokes.py) taught as 1s: 8 of them drawn on the board, sent repeatedly as ordinary steps
  (share 0) or once with the default share; the other drawings of that base read again, by the
  served (averaged) weights and by the learner's last iterate, with the served model's accuracy
  on ``digits`` and on the mouse set beside; and after one more pass of the stream.

    python bench/teaching.py [--markdown] [--smoke]
"""
from __future__ import annotations

import copy
import sys
import time
from dataclasses import dataclass

import common
import numpy as np
import teaching_lessons as lessons
import teaching_ones as ones
import teaching_wrong as wrong

from online_ml import evaluation as ev
from online_ml.config import Settings
from online_ml.harness.verdicts import target
from online_ml.learner import OnlineLearner

#: The shares of a feedback step that also go straight into the served weights, compared.
SHARES = (0.0, 0.25, 0.5, 0.75, 1.0)
#: How many records a correction counts as among the nearest (``OnlineSoftmax.feedback_copies``),
#: compared: once (as any record), and as 3 or all 9 of a drawing's nearest records.
COPIES = (1, 3, 9)
#: A rule tried instead of a fixed share, not served: the smallest share up to a cap that makes
#: the served scores put the corrected label ahead of every other by a margin — (cap, margin).
SMALLEST = ((0.25, 0.5), (0.5, 0.5))


@dataclass
class Params:
    drawings: int = 1000  # real handwriting per split (traced into strokes)
    trials: int = 200  # corrections per share and split
    epochs: int = 3  # the user's model
    taught: int = 8  # widest-based 1s taught
    repeats: tuple[int, ...] = (0, 1, 5, 20, 50)  # ordinary steps: how often each is sent
    lasting_trials: int = 40  # corrections followed through more of the stream
    lasting: tuple[int, ...] = (0, 500, 1000, 2000, 2100, 3000, 5000)  # records after it
    many: int = 64  # corrections at once, right and wrong (the lessons' ring holds 64)
    many_after: int = 2100  # records of the stream after them, read again
    counts: tuple[int, ...] = ()  # wrong corrections at once; () -> 1, FEEDBACK_LIMIT, many
    count_trials: int = 16  # disjoint sets of drawings per count

    @classmethod
    def smoke(cls) -> Params:
        return cls(drawings=100, trials=10, epochs=1, repeats=(0, 1), lasting_trials=2,
                   lasting=(0, 20), many=4, many_after=20, counts=(1, 2), count_trials=2)


def _traced(indices: list[int]) -> tuple[np.ndarray, np.ndarray]:
    from online_ml import handwriting as hw

    svgs, labels = zip(*(hw.drawing(i, hw.TRACED) for i in indices))
    return ev.stroke_features(svgs), np.array(labels)


def _outcome(model, x: np.ndarray, y: np.ndarray, before: np.ndarray, i: int,
             taught: int) -> tuple[bool, float]:
    """After drawing ``i`` was taught as ``taught``: is it read so, and how the accuracy on the
    other drawings changed (points)."""
    read = model.predict(x)
    others = np.arange(len(y)) != i
    return bool(read[i] == taught), float(100 * ((read[others] == y[others]).mean()
                                                  - before[others].mean()))


def _corrections(model, x: np.ndarray, y: np.ndarray, trials: int, correct,
                 wrong: bool = False) -> dict:
    """``trials`` corrections of drawings ``model`` reads wrong, each ``correct(model copy, row,
    label)`` (returning the share it used, or None): how often the drawing is then read right, the
    other drawings' accuracy change (mean, 5th percentile, worst) and the mean share used.
    ``wrong``: instead, drawings it reads right taught another digit (a careless or hostile
    correction; "fixed" then counts those read as taught)."""
    before, picked = lessons.read_wrong(model, x, y, trials)
    labels = y.copy()
    if wrong:
        picked = np.random.default_rng(3).choice(np.flatnonzero(before), len(picked),
                                                 replace=False)
        labels[picked] = lessons.another_digit(y[picked], np.random.default_rng(4))
    fixed, change, used = [], [], []
    for i in picked:
        m = copy.deepcopy(model)
        used.append(correct(m, np.rint(x[i]).astype(int).tolist(), int(labels[i])))
        right, moved = _outcome(m, x, y, before, i, int(labels[i]))
        fixed.append(right)
        change.append(moved)
    return {"trials": len(picked), "fixed": float(np.mean(fixed)), "change": float(np.mean(change)),
            "fixed_each": [bool(v) for v in fixed],
            "p5": float(np.percentile(change, 5)), "worst": float(np.min(change)),
            "used": None if None in used else float(np.mean(used))}


def copies_compared(model) -> tuple[int, ...]:
    """The ``feedback_copies`` compared for ``model``: ``COPIES`` for a learner with a memory of
    records, else its one way (1)."""
    return COPIES if lessons.keeps_copies(model) else (1,)


def _correction_rows(model, split: str, x: np.ndarray, y: np.ndarray, trials: int) -> list[dict]:
    """Per number of copies and share: one correction of a drawing the model reads wrong,
    ``trials`` times, learned as the job learns a feedback record."""
    def learned(share: float, copies: int):
        def correct(m, row: list[int], label: int) -> None:
            if lessons.keeps_copies(m):
                m.set_params(feedback_copies=copies)
            OnlineLearner(m).learn_one(row, label, served=share)  # steps ``m`` in place
        return correct

    rows = []
    for copies in copies_compared(model):
        for share in SHARES:
            out = _corrections(model, x, y, trials, learned(share, copies))
            taught_wrong = _corrections(model, x, y, trials, learned(share, copies), wrong=True)
            del out["used"]
            rows.append({"split": split, "copies": copies, "share": share, **out,
                         "wrong": taught_wrong["change"], "wrong_worst": taught_wrong["worst"]})
    return rows


def _parallel_rows(model, x: np.ndarray, y: np.ndarray, trials: int, share: float,
                   learners: tuple[int, ...] = (1, 2, 4), records: int = 10) -> list[dict]:
    """One correction at parallelism K: K learners start from the user's model, the first
    learns the correction and ``records - 1`` records of the stream, the others ``records``
    each (``SYNC_EVERY_RECORDS``), and their deltas are merged as the job merges them
    (``sync.merge_states`` with the learner's rules, ``SYNC_MERGE_STEP`` sqrt); then the
    corrected drawing and the others are read by the merged model. The share as the job takes
    it (scaled up by ``sync.feedback_share`` for K live learners) and, for K > 1, unscaled."""
    from online_ml import sync
    from online_ml.producer import iter_records

    stream = [(xs, label) for xs, label in iter_records(seed=11, epochs=1)]
    before, picked = lessons.read_wrong(model, x, y, trials)
    base = sync.state_of(model)
    rules = sync.rules_of(model)
    rows = []
    for k, scaled in [(k, True) for k in learners] + [(k, False) for k in learners if k > 1]:
        fixed, change = [], []
        for t, i in enumerate(picked):
            deltas = []
            for j in range(k):
                learner = OnlineLearner(copy.deepcopy(model))
                start = (t * k + j) * records % (len(stream) - records)
                mine = stream[start:start + records]
                if j == 0:  # as the trainer with k live learners (Trainer._feedback_share)
                    learner.learn_one(np.rint(x[i]).astype(int).tolist(), int(y[i]),
                                      served=sync.feedback_share(share, k) if scaled else share)
                    mine = mine[1:]
                for xs, label in mine:
                    learner.learn_one(xs, label)
                deltas.append((sync.subtract(sync.state_of(learner.model), base), records))
            merged = copy.deepcopy(model)
            sync.set_state(merged, sync.merge_states(base, deltas, rules))
            right, moved = _outcome(merged, x, y, before, i, int(y[i]))
            fixed.append(right)
            change.append(moved)
        rows.append({"learners": k, "share": share, "taken": "as the job takes it" if scaled
                     else "not scaled up (before)", "trials": len(picked),
                     "fixed": float(np.mean(fixed)), "change": float(np.mean(change))})
    return rows


def smallest_share(model, row: list[int], label: int, cap: float, margin: float) -> float:
    """A correction under the rule tried (``SMALLEST``; the softmax learner only): an ordinary
    step on ``row``, then the averaged weights moved by the smallest share ``s <= cap`` of that
    step that makes the served score of ``label`` lead every other class's by ``margin`` — the
    scores move linearly with ``s`` — or by ``cap`` where no share does. Returns ``s``."""
    x = np.asarray(row, dtype=np.float64)[None]
    weights, bias = model.weights_.copy(), model.bias_.copy()
    model.partial_fit(x, [label])
    dw, db = model.weights_ - weights, model.bias_ - bias
    z = model.decision_function(x)[0]
    moves = dw @ model._inputs(x)[0] + db  # what a share of 1 adds to each served score
    k = model.classes_.tolist().index(label)
    need = 0.0
    for j in range(len(z)):
        short = margin - (z[k] - z[j])
        if j != k and short > 0:
            slope = moves[k] - moves[j]
            need = max(need, short / slope if slope > 0 else np.inf)
    share = min(need, cap)
    model.avg_weights_ += share * dw
    model.avg_bias_ += share * db
    return float(share)


def _smallest_rows(model, split: str, x: np.ndarray, y: np.ndarray, trials: int) -> list[dict]:
    """The corrections of :func:`_correction_rows` under the rule tried, per (cap, margin)."""
    rows = []
    for cap, margin in SMALLEST:
        out = _corrections(model, x, y, trials, lambda m, row, label, cap=cap, margin=margin:
                           smallest_share(m, row, label, cap, margin))
        del out["worst"]
        rows.append({"split": split, "cap": cap, "margin": margin, **out})
    return rows


def chosen(dev_rows: list[dict], served: tuple[int, float] | None = None) -> tuple[int, float]:
    """(copies, share): of the development split's rows whose mean change of the other drawings'
    accuracy is not negative, the one whose corrected drawings were read right most often, fewer
    copies and then the smaller share on a tie ((1, 0) when none is). With one number of copies
    that is the largest such share, the rule before copies were compared. The ``served`` pair
    (copies, share), if it is among them, stays unless the best reads more of the same corrected
    drawings right beyond chance (McNemar's z over ``common.PAIRED_Z``, from each row's
    ``fixed_each``), as the served width stays in bench/handwriting_width.py: a few drawings
    more are noise, not a reason to move a setting (since 2026-12-04: with mirrored 1s a share
    of 1 read 3 more of 194 dev corrections right than 0.75, z 1.73, and halved the others' gain).

    >>> chosen([{"copies": 1, "share": 0.0, "fixed": 0.1, "change": -0.01},
    ...         {"copies": 1, "share": 0.5, "fixed": 0.6, "change": 0.2},
    ...         {"copies": 1, "share": 1.0, "fixed": 0.9, "change": -0.4},
    ...         {"copies": 3, "share": 0.5, "fixed": 0.8, "change": 0.1},
    ...         {"copies": 3, "share": 1.0, "fixed": 0.8, "change": 0.0}])
    (3, 0.5)
    >>> rows = [{"copies": 9, "share": 0.75, "fixed": 0.9, "change": 0.5,
    ...          "fixed_each": [True] * 9 + [False]},
    ...         {"copies": 9, "share": 1.0, "fixed": 1.0, "change": 0.1, "fixed_each": [True] * 10}]
    >>> chosen(rows), chosen(rows, served=(9, 0.75))  # one drawing more: a tie keeps the served
    ((9, 1.0), (9, 0.75))
    """
    ok = [r for r in dev_rows if r["change"] >= 0]
    if not ok:
        return 1, 0.0
    best = min(ok, key=lambda r: (-r["fixed"], r["copies"], r["share"]))
    kept = next((r for r in ok if (r["copies"], r["share"]) == served), None)
    if kept is not None and kept is not best and "fixed_each" in best:
        _, _, z = common.paired(np.array(best["fixed_each"]), np.array(kept["fixed_each"]))
        if z <= common.PAIRED_Z:
            best = kept
    return int(best["copies"]), float(best["share"])


CORRECTION_COLUMNS = [("split", "split", ""), ("copies (records it counts as)", "copies", "d"),
                      ("share into the served weights", "share", "g"),
                      ("corrections", "trials", "d"),
                      ("corrected drawing read right", "fixed", ".3f"),
                      ("others' accuracy change, mean (points)", "change", "+.2f"),
                      ("5th percentile", "p5", "+.2f"), ("worst", "worst", "+.2f"),
                      ("one wrong correction instead: others' change, mean", "wrong", "+.2f"),
                      ("its worst", "wrong_worst", "+.2f")]
PARALLEL_COLUMNS = [("learners (one merge of their deltas)", "learners", "d"),
                    ("FEEDBACK_STEP_SHARE", "share", "g"), ("the learner's share", "taken", ""),
                    ("corrections", "trials", "d"),
                    ("corrected drawing read right", "fixed", ".3f"),
                    ("others' accuracy change, mean (points)", "change", "+.2f")]
SMALLEST_COLUMNS = [("split", "split", ""), ("cap", "cap", "g"), ("margin", "margin", "g"),
                    ("corrections", "trials", "d"), ("corrected drawing read right", "fixed", ".3f"),
                    ("others' accuracy change, mean (points)", "change", "+.2f"),
                    ("5th percentile", "p5", "+.2f"), ("share used, mean", "used", ".3f")]


def run(p: Params, smoke: bool = False, quiet: bool = False) -> dict:
    from online_ml import handwriting as hw

    started = time.time()
    machine = common.machine_info()
    settings = Settings.from_env()
    common.progress(f"teaching: the user's model ({p.epochs} passes) and {p.drawings} traced "
                    "drawings per split")
    model = ev.stream_model(p.epochs, 0)
    _, labels = hw.load_mnist()
    dev, test = hw.split(labels)
    rows = []
    smallest: list[dict] = []
    splits = {}
    for split, indices in (("dev", dev), ("test", test)):
        x, y = splits[split] = _traced(indices[:p.drawings])
        common.progress(f"teaching: {p.trials} corrections per share on {split}")
        rows += _correction_rows(model, split, x, y, p.trials)
        if hasattr(model, "avg_weights_"):  # the rule tried needs averaged weights (softmax)
            smallest += _smallest_rows(model, split, x, y, p.trials)
    served_copies = lessons.kept_copies(model)
    copies, share = chosen([r for r in rows if r["split"] == "dev"],
                           (served_copies, settings.feedback_step_share))
    open_copies, open_share = wrong.chosen_open([r for r in rows if r["split"] == "dev"])
    open_board = wrong.open_rows(rows, (copies, share), (open_copies, open_share))
    common.progress("teaching: one correction merged with parallel learners (test)")
    parallel = _parallel_rows(model, *splits["test"], p.trials, settings.feedback_step_share)
    on_test = next(r for r in rows
                   if r["split"] == "test" and r["share"] == share and r["copies"] == copies)
    common.progress(f"teaching: {p.lasting_trials} corrections through more of the stream (test)")
    lasting = lessons.lasting_rows(model, *splits["test"], p)
    common.progress(f"teaching: {p.many} corrections at once, right and wrong (test)")
    many = lessons.many_rows(model, *splits["test"], p)
    counts = wrong.wrong_counts(p, settings.feedback_limit)
    common.progress(f"teaching: {', '.join(map(str, counts))} wrong corrections at once (test)")
    by_count = wrong.wrong_by_count(model, *splits["test"], p, settings.feedback_limit,
                                      (open_copies, open_share))
    common.progress("teaching: the widest-based 1s")
    teaching = ones.teach_rows(model, p, settings.feedback_step_share)
    targets = [
        target("FEEDBACK_STEP_SHARE: distance from the share chosen on dev",
               abs(settings.feedback_step_share - share), 0.0, "<=",
               f"set {settings.feedback_step_share:g}, chosen {share:g} with {copies} copies (of "
               "those whose mean change on dev >= 0, the most corrected drawings read right; "
               "one ahead of the set pair within chance is a tie, which keeps it)"),
        target("feedback_copies: distance from the copies chosen on dev",
               abs(served_copies - copies), 0, "<=",
               f"the learner's {served_copies}, chosen {copies}"),
        target("chosen share and copies on test: others' accuracy change, mean (points)",
               round(on_test["change"], 2), 0.0, ">=",
               f"corrected drawing read right {on_test['fixed']:.3f}"),
    ]
    targets += lessons.lesson_target(lasting, p.lasting)
    text = "\n\n".join([
        common.table("one correction of real handwriting (traced strokes), per copies and share",
                     CORRECTION_COLUMNS, rows),
        common.table("which share and copies, by whom the board is for (the chosen pairs' rows)",
                     wrong.OPEN_COLUMNS, open_board),
        common.table("tried, not served: the smallest share that makes the board agree",
                     SMALLEST_COLUMNS, smallest),
        common.table("one correction (test) merged with parallel learners", PARALLEL_COLUMNS,
                     parallel),
        common.table("how long a correction lasts (test): the corrected drawing still read right",
                     lessons.lasting_columns(p.lasting), lasting),
        common.table(f"{p.many} corrections at once (test): the other drawings",
                     lessons.many_columns(p.many_after), many),
        common.table("wrong corrections at once (test): what one client's allowance can cost "
                     f"(FEEDBACK_LIMIT {settings.feedback_limit} in "
                     f"{settings.feedback_window_seconds:g} s)", wrong.COUNT_COLUMNS, by_count),
        common.table("teaching the widest-based 1s", ones.TEACH_COLUMNS, teaching),
        common.targets_table(targets)])
    results = {"corrections": rows, "chosen_share": share, "chosen_copies": copies,
               "open_share": open_share, "open_copies": open_copies, "open_board": open_board,
               "smallest": smallest,
               "parallel": parallel, "lasting": lasting, "many": many, "by_count": by_count,
               "teaching": teaching}
    path = common.write_result("teaching", {**vars(p), "shares": list(SHARES),
                                            "copies": list(copies_compared(model))}, results, targets,
                               machine, started, smoke)
    out = common.finish(path, rows, targets, text, smoke, quiet)
    out["results"] = results
    return out


def main() -> int:
    return common.offline_main(__doc__, run, Params, [
        (CORRECTION_COLUMNS, "corrections"), (wrong.OPEN_COLUMNS, "open_board"),
        (SMALLEST_COLUMNS, "smallest"),
        (PARALLEL_COLUMNS, "parallel"), (lessons.lasting_columns(Params().lasting), "lasting"),
        (lessons.many_columns(Params().many_after), "many"), (wrong.COUNT_COLUMNS, "by_count"),
        (ones.TEACH_COLUMNS, "teaching")])


if __name__ == "__main__":
    sys.exit(main())
