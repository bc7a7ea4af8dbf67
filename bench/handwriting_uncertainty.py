"""bench/handwriting.py's uncertainty section: the probabilities the server shows, calibrated.

On the server's scores of real handwriting (the decision values averaged over each drawing's
views, ``evaluation.view_scores``): the softmax temperature and the "sure" threshold fitted on the
development split for the model's learner, scored on the test split (ECE, how often the model is
right when it says it is sure, and when it is not), against the model's own ``predict_proba``
and against the values the server uses (online_ml/uncertainty.py ``CALIBRATIONS``); and the
threshold each promise of "right when sure" would need.
"""
from __future__ import annotations

import numpy as np

from online_ml import evaluation as ev
from online_ml import uncertainty as unc

PRECISIONS = (0.8, 0.85, 0.9, 0.95)
OPT_COLUMNS = [("sure answers right (dev)", "promise", ".2f"), ("threshold (dev)", "threshold", ".3f"),
               ("sure (dev)", "dev_sure_share", ".0%"), ("sure (test)", "sure_share", ".0%"),
               ("right when sure (test)", "accuracy_when_sure", ".3f")]
UNC_COLUMNS = [("probabilities", "probabilities", ""), ("sure from", "threshold", ".3f"),
               ("ECE", "ece", ".3f"), ("mean top p", "mean_top_p", ".3f"),
               ("accuracy", "accuracy", ".3f"), ("sure", "sure_share", ".0%"),
               ("right when sure", "accuracy_when_sure", ".3f"),
               ("right when unsure", "accuracy_when_unsure", ".3f"),
               ("unsure: right digit among the 2 named", "in_candidates_when_unsure", ".3f")]


def run_section(model, dev_views, dev_y, test_views, test_y) -> tuple[list[dict], dict]:
    """Calibration and the sure rule, chosen on dev, scored on test, on the server's scores (the
    decision values averaged over each drawing's views, ``ev.view_scores``); with the model's own
    predict_proba (averaged over the views, threshold chosen the same way) for comparison. A
    model without decision values (naive Bayes, the MLP) has no temperature (``None``): its own
    predict_proba is what the server shows, and the threshold is chosen on it."""
    classes = [int(c) for c in model.classes_]
    served = unc.calibration(model)  # what the server uses for this model's learner
    own = ("model's predict_proba", lambda V: ev.view_proba(model, V))
    if unc.logits(model, dev_views[0][:1]) is None:
        # no decision values (naive Bayes, the MLP): the server shows the model's own
        # predict_proba with the sure threshold of CALIBRATIONS' default; nothing to fit
        temperature = None
        calibrated_of = own[1]
        variants = [own, (f"server: model's predict_proba, sure >= {served.threshold:g}", own[1])]
    else:
        temperature = unc.fit_temperature(ev.view_scores(model, dev_views), dev_y, classes)

        def calibrated_of(V):
            return unc.softmax(ev.view_scores(model, V), temperature)
        variants = [own, (f"softmax T={temperature:.2f} (fitted on dev)", calibrated_of),
                    (f"server: softmax T={served.temperature:g}, sure >= {served.threshold:g}",
                     lambda V: unc.softmax(ev.view_scores(model, V), served.temperature))]
    rows, chosen = [], {"learner": unc.learner_of(model), "temperature": temperature,
                        "served": {"temperature": served.temperature,
                                   "threshold": served.threshold}}
    for name, proba in variants:
        p_dev, p_test = proba(dev_views), proba(test_views)
        hit_dev = np.asarray(classes)[p_dev.argmax(1)] == dev_y
        server = name.startswith("server")
        threshold = served.threshold if server else unc.choose_threshold(p_dev.max(1), hit_dev)
        if proba is calibrated_of and not server:
            chosen["threshold"] = threshold
        order = np.argsort(-p_test, axis=1)
        top = p_test.max(1)
        answer = np.asarray(classes)[order[:, 0]]
        second = np.asarray(classes)[order[:, 1]]
        hit = answer == test_y
        sure = top >= threshold
        rows.append({
            "probabilities": name, "threshold": threshold,
            "ece": unc.expected_calibration_error(top, hit),
            "mean_top_p": float(top.mean()), "accuracy": float(hit.mean()),
            "sure_share": float(sure.mean()),
            "accuracy_when_sure": float(hit[sure].mean()) if sure.any() else None,
            "accuracy_when_unsure": float(hit[~sure].mean()) if (~sure).any() else None,
            "in_candidates_when_unsure": float(((answer == test_y) | (second == test_y))[~sure].mean())
            if (~sure).any() else None,
        })
    calibrated = calibrated_of(dev_views)
    hit_dev = np.asarray(classes)[calibrated.argmax(1)] == dev_y
    p_test = calibrated_of(test_views)
    hit_test = np.asarray(classes)[p_test.argmax(1)] == test_y
    options = []
    for precision in PRECISIONS:
        t = unc.choose_threshold(calibrated.max(1), hit_dev, precision)
        sure = p_test.max(1) >= t
        options.append({"promise": precision, "threshold": t,
                        "dev_sure_share": float((calibrated.max(1) >= t).mean()),
                        "sure_share": float(sure.mean()),
                        "accuracy_when_sure": float(hit_test[sure].mean()) if sure.any() else None})
    chosen["options"] = options
    return rows, chosen
