"""Probabilities: the logistic models' own, or Platt scaling of held-out SVM scores."""

from __future__ import annotations

import numpy as np
import torch

from featx.svm.dual import targets


def platt(decision: np.ndarray, labels: np.ndarray, include_difficult: bool = False,
          iterations: int = 100) -> np.ndarray:
    """Platt scaling of each class, (C, 2) [A, B] with P(class | z) = 1 / (1 + exp(A z + B)),
    fitted on held-out decision values (n, C) -- Platt (1999) with the targets
    (N+ + 1) / (N+ + 2) and 1 / (N- + 2), by Newton's method with backtracking (Lin, Lin &
    Weng 2007, the algorithm libsvm and scikit-learn use)."""
    y, s = targets(labels, decision.shape[1], include_difficult)
    out = np.zeros((decision.shape[1], 2))
    for cls in range(decision.shape[1]):
        used = s[:, cls] > 0
        z, pos = decision[used, cls].astype(np.float64), y[used, cls] > 0
        n_pos, n_neg = int(pos.sum()), int((~pos).sum())
        t = np.where(pos, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))

        def f(a, b):
            e = a * z + b  # log(1 + exp(e)) - (1 - t) e, stably
            return float((np.logaddexp(0, e) - (1 - t) * e).sum())

        a, b = 0.0, float(np.log((n_neg + 1) / (n_pos + 1)))
        fval = f(a, b)
        for _ in range(iterations):
            p = 1 / (1 + np.exp(np.clip(a * z + b, -700, 700)))  # P(positive)
            d1 = t - p  # the derivative of the loss in e is -(d1)
            d2 = p * (1 - p)
            ga, gb = float((z * d1).sum()), float(d1.sum())
            if abs(ga) < 1e-5 and abs(gb) < 1e-5:
                break
            h11, h22, h21 = float((z * z * d2).sum()) + 1e-12, float(d2.sum()) + 1e-12, \
                float((z * d2).sum())
            det = h11 * h22 - h21 * h21
            da, db = -(h22 * ga - h21 * gb) / det, -(-h21 * ga + h11 * gb) / det
            step = 1.0
            while step >= 1e-10:
                new = f(a + step * da, b + step * db)
                if new < fval + 1e-4 * step * (ga * da + gb * db):
                    a, b, fval = a + step * da, b + step * db, new
                    break
                step /= 2
            else:
                break
        out[cls] = a, b
    return out


def probabilities(decision: np.ndarray, kind: str, multilabel: bool,
                  calibration: np.ndarray | None = None) -> np.ndarray:
    """Class probabilities (n, C) of decision values: ``kind`` ``softmax`` (multinomial
    logistic), ``sigmoid`` (one-vs-rest logistic) or ``platt`` (``calibration`` (C, 2) from
    :func:`platt`). Single-label one-vs-rest probabilities are normalised to sum to 1 over
    the classes (as scikit-learn's one-vs-rest and calibrated classifiers do); multi-label
    ones are each class's own."""
    z = torch.from_numpy(np.asarray(decision, np.float64))
    if kind == "softmax":
        return torch.softmax(z, 1).numpy()
    if kind == "platt":
        cal = torch.from_numpy(np.asarray(calibration, np.float64))
        z = -(z * cal[:, 0] + cal[:, 1])
    p = torch.sigmoid(z).numpy()
    if multilabel:
        return p
    total = p.sum(1, keepdims=True)
    return np.where(total > 0, p / np.where(total > 0, total, 1), 1 / p.shape[1])


def of_model(scores: np.ndarray, mattrs: dict) -> np.ndarray | None:
    """The class probabilities of a model's scores (:func:`probabilities` with the kind,
    multi-label flag and Platt parameters its attributes ``mattrs`` hold), or None when the
    model carries none (an SVM trained without --calibrate)."""
    kind = mattrs.get("probability") or ""
    if not kind:
        return None
    return probabilities(scores, kind, bool(mattrs.get("multilabel")), mattrs.get("platt"))
