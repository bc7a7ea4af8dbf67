"""bench/teaching.py's wrong corrections: what a wrong one costs the other drawings, which
share and copies suit a board open to others (chosen on dev for ``OPEN_WRONG`` of its corrections
wrong), and what one client's allowance (``FEEDBACK_LIMIT``) of wrong ones costs at once (the
tables "which share and copies, by whom the board is for" and "wrong corrections at once").

Run through ``python bench/teaching.py`` (not on its own).
"""
from __future__ import annotations

from typing import Any

import numpy as np
from teaching_lessons import ONE_MORE_RECORD, another_digit, kept_as, kept_ways

from online_ml.config import Settings

#: A board open to others: the share of its corrections assumed wrong (a careless or hostile
#: user's) when choosing the share and copies that help the other drawings most on average.
OPEN_WRONG = 0.1


def chosen_open(dev_rows: list[dict], wrong: float = OPEN_WRONG) -> tuple[int, float]:
    """(copies, share) for a board open to others: of the development split's rows, the one whose
    corrections change the other drawings' accuracy most on average when a share ``wrong`` of
    them are wrong ones (each costing its row's ``wrong``), fewer copies and then the smaller share
    on a tie.

    >>> chosen_open([{"copies": 9, "share": 0.25, "change": 0.4, "wrong": -0.6},
    ...              {"copies": 9, "share": 0.75, "change": 0.3, "wrong": -2.1}])
    (9, 0.25)
    """
    best = min(dev_rows, key=lambda r: (-expected(r, wrong), r["copies"], r["share"]))
    return int(best["copies"]), float(best["share"])


def expected(row: dict, wrong: float = OPEN_WRONG) -> float:
    """The others' mean accuracy change (points) of a correction, ``wrong`` of them wrong ones."""
    return (1 - wrong) * row["change"] + wrong * row["wrong"]


def open_rows(rows: list[dict], served: tuple[int, float], open_: tuple[int, float]) -> list[dict]:
    """The served choice and the open board's, on both splits."""
    out = []
    for board, (copies, share) in (("the person who runs it (served)", served),
                                   (f"open to others ({OPEN_WRONG:.0%} of corrections wrong)",
                                    open_)):
        for r in rows:
            if (r["copies"], r["share"]) == (copies, share):
                out.append({"board": board, "split": r["split"], "copies": copies, "share": share,
                            "fixed": r["fixed"], "change": r["change"], "wrong": r["wrong"],
                            "expected": expected(r)})
    return out


def wrong_counts(p: Any, limit: int) -> tuple[int, ...]:
    """How many wrong corrections at once the by-count table compares: ``p.counts``, or one, a
    client's allowance in a window (``FEEDBACK_LIMIT``, if any) and ``p.many``."""
    return tuple(p.counts) or tuple(sorted({1, p.many, *([limit] if limit else [])}))


def wrong_by_count(model, x: np.ndarray, y: np.ndarray, p: Any, limit: int,
                   open_board: tuple[int, float] | None = None) -> list[dict]:
    """What k wrong corrections at once cost the other drawings, for each k of
    :func:`wrong_counts`: drawings the model reads right taught as another digit (a careless or
    hostile client), learned as the learner keeps a correction at the default share and as one
    more record of the stream (and as ``open_board``'s copies and share, bench/teaching.py's
    choice for a board open to others, if given); the others' accuracy change right after, mean
    and worst over ``p.count_trials`` disjoint sets of k. Why: it is what one client's allowance
    (``FEEDBACK_LIMIT`` in a window, online_ml/feedback_limit.py) can cost."""
    share = Settings.from_env().feedback_step_share
    rng = np.random.default_rng(2)
    read = model.predict(x)
    right = read == y
    pool = rng.permutation(np.flatnonzero(right))
    wrong = another_digit(y, rng)  # each drawing's wrong label, every way alike
    served = kept_ways(model)[-1]
    ways = [(served[0], served[1], served[2], share), (ONE_MORE_RECORD, 1, 0, 0.0)]
    if open_board is not None and tuple(open_board) != (served[1], share):
        ways.insert(1, (served[0], open_board[0], served[2], open_board[1]))
    rows = []
    for k in wrong_counts(p, limit):
        sets = [pool[i * k:(i + 1) * k] for i in range(min(p.count_trials, len(pool) // k))]
        for how, copies, lessons, step in ways:
            changes = []
            for picked in sets:
                learner = kept_as(model, copies, lessons)
                for i in picked:
                    learner.learn_one(np.rint(x[i]).astype(int).tolist(), int(wrong[i]),
                                      served=step)
                others = np.ones(len(y), dtype=bool)
                others[picked] = False
                now = learner.model.predict(x[others]) == y[others]
                changes.append(float(100 * (now.mean() - right[others].mean())))
            rows.append({"count": k, "kept": how, "copies": copies, "share": step,
                         "sets": len(sets),
                         "change": float(np.mean(changes)), "worst": float(min(changes))})
    return rows


#: The columns of the wrong-corrections-by-count table.
COUNT_COLUMNS = [("wrong corrections at once", "count", "d"), ("kept", "kept", ""),
                 ("copies", "copies", "d"),
                 ("share into the served weights", "share", "g"), ("sets", "sets", "d"),
                 ("others' accuracy change, mean (points)", "change", "+.2f"),
                 ("worst set (points)", "worst", "+.2f")]


OPEN_COLUMNS = [("board", "board", ""), ("split", "split", ""), ("copies", "copies", "d"),
                ("share", "share", "g"), ("corrected drawing read right", "fixed", ".3f"),
                ("others' change: a right correction", "change", "+.2f"),
                ("a wrong one", "wrong", "+.2f"),
                (f"expected, {OPEN_WRONG:.0%} wrong", "expected", "+.2f")]
