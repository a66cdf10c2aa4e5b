"""Evaluation metrics.

**VOC2007 average precision** (Everingham et al., VOCdevkit ``VOCevalcls``): images are ranked
by decreasing score; images whose ground truth is 0 ("difficult only") count as neither positive
nor negative. With precision p and recall r along the ranking, the 11-point interpolated AP is

    AP = 1/11 * sum_{t in 0, 0.1, ..., 1} max_{r >= t} p(r)      (0 where no r >= t)

and mAP is its mean over the classes. :func:`average_precision` is the all-point variant (area
under the interpolated precision-recall curve, VOC2010 onwards), reported beside it.

Ties in the scores: VOCdevkit sorts with MATLAB's ``sort(..., 'descend')``, which keeps tied
items in their input order; :func:`voc07_ap` uses a stable sort likewise.
"""

from __future__ import annotations

import numpy as np


def _precision_recall(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    keep = labels != 0
    s, y = scores[keep], labels[keep] > 0
    order = np.argsort(-s, kind="stable")
    tp = np.cumsum(y[order])
    fp = np.cumsum(~y[order])
    npos = max(int(y.sum()), 1)
    return tp / npos, tp / np.maximum(tp + fp, np.finfo(float).tiny)


def voc07_ap(scores, labels) -> np.ndarray:
    """11-point interpolated AP per class. scores, labels: (N, C) (or (N,)); labels in {1,-1,0}."""
    scores, labels = np.asarray(scores, float), np.asarray(labels)
    single = scores.ndim == 1
    scores, labels = np.atleast_2d(scores.T).T, np.atleast_2d(labels.T).T
    out = np.zeros(scores.shape[1])
    for c in range(scores.shape[1]):
        rec, prec = _precision_recall(scores[:, c], labels[:, c])
        out[c] = np.mean([prec[rec >= t].max() if (rec >= t).any() else 0.0
                          for t in np.linspace(0, 1, 11)])
    return out[0] if single else out


def average_precision(scores, labels) -> np.ndarray:
    """All-point interpolated AP per class (VOC2010+), same conventions as :func:`voc07_ap`."""
    scores, labels = np.asarray(scores, float), np.asarray(labels)
    single = scores.ndim == 1
    scores, labels = np.atleast_2d(scores.T).T, np.atleast_2d(labels.T).T
    out = np.zeros(scores.shape[1])
    for c in range(scores.shape[1]):
        rec, prec = _precision_recall(scores[:, c], labels[:, c])
        mrec = np.concatenate([[0.0], rec, [1.0]])
        mpre = np.concatenate([[0.0], prec, [0.0]])
        mpre = np.maximum.accumulate(mpre[::-1])[::-1]
        steps = np.nonzero(mrec[1:] != mrec[:-1])[0]
        out[c] = np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1])
    return out[0] if single else out


def accuracy(predicted, truth, num_classes: int) -> tuple[float, np.ndarray]:
    """Top-1 accuracy and per-class accuracy (the mean of the latter is 'mean class accuracy')."""
    predicted, truth = np.asarray(predicted), np.asarray(truth)
    per_class = np.array([np.mean(predicted[truth == c] == c) if np.any(truth == c) else np.nan
                          for c in range(num_classes)])
    return float(np.mean(predicted == truth)), per_class
