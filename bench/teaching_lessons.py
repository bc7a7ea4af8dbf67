"""bench/teaching.py's lessons: how long a correction from the board lasts, kept each way the
learner can keep it, and what many corrections at once do — right ones and wrong ones — to the
other drawings (the tables "how long a correction lasts" and "64 corrections at once", and the
target that a lesson lasts). Also the helpers the other sections share: which drawings a model
reads wrong, and how many times it keeps a correction.

Run through ``python bench/teaching.py`` (not on its own).
"""
from __future__ import annotations

import copy
import itertools
from typing import Any

import numpy as np

from online_ml.config import Settings
from online_ml.harness.verdicts import target
from online_ml.learner import OnlineLearner

#: How many of the corrected drawings a lesson must still make right after the longest stretch of
#: the stream followed (``Params.lasting``: 5,000 records, 2.4 times the memory of records).
LESSON_LASTS = 0.75
#: How the many-corrections table names a correction learned as one more record of the stream.
ONE_MORE_RECORD = "as one more record (share 0)"


def read_wrong(model, x: np.ndarray, y: np.ndarray, trials: int) -> tuple[np.ndarray, np.ndarray]:
    """Which drawings ``model`` reads right, and ``trials`` of those it reads wrong (seeded)."""
    before = model.predict(x) == y
    wrong = np.flatnonzero(~before)
    return before, np.random.default_rng(0).choice(wrong, min(trials, len(wrong)), replace=False)


def another_digit(y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """For each label of ``y`` another digit, drawn by ``rng``: what a wrong correction teaches."""
    return (y + rng.integers(1, 10, len(y))) % 10


def keeps_copies(model) -> bool:
    """Whether ``model`` keeps a correction ``feedback_copies`` times: a memory of records."""
    return bool(getattr(model, "neighbours", 0)) and "feedback_copies" in model.get_params()


def kept_copies(model) -> int:
    """How many times ``model`` keeps a correction: its ``feedback_copies``, or 1 without a
    memory of records."""
    return int(model.feedback_copies) if keeps_copies(model) else 1


def kept_ways(model) -> list[tuple[str, int, int]]:
    """(how, copies, lessons) a correction is kept, compared: once and ``feedback_copies`` times
    in the memory of records, and as the learner keeps it (among its lessons, if it has them)."""
    copies, lessons = kept_copies(model), int(getattr(model, "lessons", 0))
    ways = [("in the memory of records", n, 0) for n in sorted({1, copies})]
    if keeps_copies(model) and lessons:
        ways.append(("among the lessons", copies, lessons))
    return ways


def kept_as(model, copies: int, lessons: int) -> OnlineLearner:
    """A copy of ``model`` that keeps a correction as ``copies`` records, among ``lessons`` (0: in
    the memory of records), to learn through as the job does."""
    m = copy.deepcopy(model)
    if keeps_copies(m):
        m.set_params(feedback_copies=copies, lessons=lessons)
    return OnlineLearner(m)


def lasting_rows(model, x: np.ndarray, y: np.ndarray, p: Any) -> list[dict]:
    """How long a correction lasts: ``p.lasting_trials`` corrections (the default share), each
    followed by the stream's records (another shuffle) and its drawing read again after each
    count of ``p.lasting``; kept each way of :func:`kept_ways`."""
    from online_ml.producer import iter_records

    settings = Settings.from_env()
    stream = list(itertools.islice(iter_records(seed=9), max(p.lasting)))
    _, picked = read_wrong(model, x, y, p.lasting_trials)
    rows = []
    for how, copies, lessons in kept_ways(model):
        still: dict[int, list[bool]] = {n: [] for n in p.lasting}
        for i in picked:
            learner = kept_as(model, copies, lessons)
            m = learner.model
            learner.learn_one(np.rint(x[i]).astype(int).tolist(), int(y[i]),
                              served=settings.feedback_step_share)
            done = 0
            for n in p.lasting:
                for xs, label in stream[done:n]:
                    learner.learn_one(xs, label)
                done = n
                still[n].append(bool(m.predict(x[i:i + 1])[0] == y[i]))
        rows.append({"kept": how, "copies": copies, "trials": len(picked),
                     **{f"after_{n}": float(np.mean(v)) for n, v in still.items()}})
    return rows


def many_rows(model, x: np.ndarray, y: np.ndarray, p: Any) -> list[dict]:
    """Many corrections at once (``p.many``), kept each way of :func:`kept_ways` at the default
    share, and as one more record of the stream (share 0, once, no lessons: what a board open to
    others may prefer): right ones (drawings the model reads wrong, taught their label) and
    wrong ones (drawings it reads right, taught another digit: a careless or hostile user); the
    other drawings' accuracy change right after them and after ``p.many_after`` more records of
    the stream, each against the model that learned the same records without them. Why: a
    lesson kept apart from the stream outlives it — a wrong one too."""
    from online_ml.producer import iter_records

    settings = Settings.from_env()
    stream = list(itertools.islice(iter_records(seed=9), p.many_after))
    rng = np.random.default_rng(1)
    read = model.predict(x)
    kinds = {"right": (np.flatnonzero(read != y), lambda i: int(y[i])),
             "wrong": (np.flatnonzero(read == y),
                       lambda i: int((y[i] + rng.integers(1, 10)) % 10))}
    plain = OnlineLearner(copy.deepcopy(model))
    for xs, label in stream:
        plain.learn_one(xs, label)
    plain_read = plain.model.predict(x)
    ways = [(how, copies, lessons, settings.feedback_step_share)
            for how, copies, lessons in kept_ways(model)]
    ways.append((ONE_MORE_RECORD, 1, 0, 0.0))
    rows = []
    for kind, (pool, label_of) in kinds.items():
        picked = rng.choice(pool, min(p.many, len(pool)), replace=False)
        taught = [label_of(i) for i in picked]
        others = np.ones(len(y), dtype=bool)
        others[picked] = False
        for how, copies, lessons, share in ways:
            learner = kept_as(model, copies, lessons)
            m = learner.model
            for i, label in zip(picked, taught):
                learner.learn_one(np.rint(x[i]).astype(int).tolist(), label, served=share)
            now = float(100 * ((m.predict(x[others]) == y[others]).mean()
                               - (read[others] == y[others]).mean()))
            for xs, label in stream:
                learner.learn_one(xs, label)
            later = float(100 * ((m.predict(x[others]) == y[others]).mean()
                                 - (plain_read[others] == y[others]).mean()))
            held = float(np.mean(m.predict(x[picked]) == np.array(taught)))
            rows.append({"corrections": kind, "kept": how, "copies": copies, "share": share,
                         "taught": len(picked), "now": now, "later": later, "held": held})
    return rows


def many_columns(after: int) -> list[tuple[str, str, str]]:
    """The columns of the many-corrections table, ``after`` records of the stream later."""
    return [("corrections", "corrections", ""), ("kept", "kept", ""), ("copies", "copies", "d"),
            ("share into the served weights", "share", "g"), ("taught", "taught", "d"),
            ("others' accuracy change, right after (points)", "now", "+.2f"),
            (f"after {after:,} more records", "later", "+.2f"),
            (f"taught drawings read as taught, after {after:,}", "held", ".3f")]


def lasting_columns(counts: tuple[int, ...]) -> list[tuple[str, str, str]]:
    """The columns of the how-long table for these counts of records after a correction."""
    return [("kept", "kept", ""), ("copies", "copies", "d"), ("corrections", "trials", "d"),
            *[(f"after {n:,} records", f"after_{n}", ".2f") for n in counts]]


def lesson_target(lasting: list[dict], counts: tuple[int, ...]) -> list[dict]:
    """The target that a correction kept among the lessons still makes its drawing right after
    the longest stretch of ``counts`` (none for a learner without lessons)."""
    apart = [r for r in lasting if r["kept"] == "among the lessons"]
    if not apart:
        return []
    last = max(counts)
    in_memory = max(r[f"after_{last}"] for r in lasting if r["kept"] != "among the lessons")
    return [target(f"a lesson: corrected drawing still read right after {last:,} records (test)",
                   round(apart[0][f"after_{last}"], 2), LESSON_LASTS, ">=",
                   f"kept in the memory of records instead: {in_memory:.2f}")]
