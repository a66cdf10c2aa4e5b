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


def precision_recall(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Recall and precision after each ranked image of one class (labels 0 left out), the
    points both APs are computed from. (Not scikit-learn's precision_recall_curve: it merges
    tied scores into one point and has no 'difficult' label; docs/architecture.md.)"""
    keep = labels != 0
    s, y = scores[keep], labels[keep] > 0
    order = np.argsort(-s, kind="stable")
    tp = np.cumsum(y[order])
    fp = np.cumsum(~y[order])
    npos = max(int(y.sum()), 1)
    return tp / npos, tp / np.maximum(tp + fp, np.finfo(float).tiny)


def _per_class(ap, scores, labels) -> np.ndarray:
    """Apply a one-class AP to each column of (N, C) scores/labels ((N,) gives a scalar). A
    class with no positive image (all -1, or only 0) has no AP: NaN (VOCdevkit would divide
    by zero), left out of a mean by ``np.nanmean``."""
    scores, labels = np.asarray(scores, float), np.asarray(labels)

    def one(s, y):
        return ap(*precision_recall(s, y)) if (y > 0).any() else float("nan")

    if scores.ndim == 1:
        return one(scores, labels)
    return np.array([one(scores[:, c], labels[:, c]) for c in range(scores.shape[1])])


def matlab_colon(a: float, d: float, b: float) -> tuple[float, ...]:
    """MATLAB's ``a:d:b`` (d > 0, b - a a whole number of steps), bit for bit: the first half
    is a + k*d, the second half b - k*d counted from the end, an even count's middle (a+b)/2."""
    n = round((b - a) / d)
    m = n // 2
    x = [0.0] * (n + 1)
    for k in range(m + (n % 2)):
        x[k] = a + k * d
        x[n - k] = b - k * d
    if n % 2 == 0:
        x[m] = (a + b) / 2
    return tuple(x)


# VOCevalcls' thresholds ``0:0.1:1``: each the double nearest i/10 except 0.3, which is
# 3*0.1 = 0.30000000000000004 (so a recall of exactly 3/10 does not reach it in VOCdevkit
# either). np.linspace(0, 1, 11) gave 0.6000000000000001 and 0.7000000000000001, which
# recalls of exactly 6/10 and 7/10 (positive counts that are multiples of 10) missed.
ELEVEN_POINTS = matlab_colon(0.0, 0.1, 1.0)


def _eleven_point(rec: np.ndarray, prec: np.ndarray) -> float:
    return float(np.mean([prec[rec >= t].max() if (rec >= t).any() else 0.0
                          for t in ELEVEN_POINTS]))


def _all_point(rec: np.ndarray, prec: np.ndarray) -> float:
    mrec = np.concatenate([[0.0], rec, [1.0]])
    mpre = np.maximum.accumulate(np.concatenate([[0.0], prec, [0.0]])[::-1])[::-1]
    steps = np.nonzero(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


def voc07_ap(scores, labels) -> np.ndarray:
    """11-point interpolated AP per class. scores, labels: (N, C) (or (N,)); labels in {1,-1,0}."""
    return _per_class(_eleven_point, scores, labels)


def average_precision(scores, labels) -> np.ndarray:
    """All-point interpolated AP per class (VOC2010+), same conventions as :func:`voc07_ap`."""
    return _per_class(_all_point, scores, labels)


def accuracy(predicted, truth, num_classes: int) -> tuple[float, np.ndarray]:
    """Top-1 accuracy and per-class accuracy (the mean of the latter is 'mean class accuracy')."""
    predicted, truth = np.asarray(predicted), np.asarray(truth)
    per_class = np.array([np.mean(predicted[truth == c] == c) if np.any(truth == c) else np.nan
                          for c in range(num_classes)])
    return float(np.mean(predicted == truth)), per_class


def precision_recall_f1(predicted, truth, num_classes: int) -> dict:
    """Per-class precision, recall, F1 and support, and their macro and support-weighted
    means, of single-label predictions: scikit-learn's ``precision_recall_fscore_support``
    (a class never predicted has precision 0, one never present recall 0:
    ``zero_division=0``)."""
    from sklearn.metrics import precision_recall_fscore_support

    labels = list(range(num_classes))
    p, r, f, n = precision_recall_fscore_support(truth, predicted, labels=labels,
                                                 zero_division=0)
    out = {"precision": p.tolist(), "recall": r.tolist(), "f1": f.tolist(),
           "support": [int(x) for x in n]}
    for avg in ("macro", "weighted"):
        ap, ar, af, _ = precision_recall_fscore_support(truth, predicted, labels=labels,
                                                        average=avg, zero_division=0)
        out[avg] = {"precision": float(ap), "recall": float(ar), "f1": float(af)}
    return out


def precision_recall_f1_multilabel(scores: np.ndarray, labels: np.ndarray) -> dict:
    """As :func:`precision_recall_f1` for multi-label labels in {1, -1, 0}: each class's
    predictions are its positive scores (the SVM's decision), its difficult images (0) left
    out of that class, as AP leaves them out."""
    p, r, f, n = [], [], [], []
    for c in range(labels.shape[1]):
        used = labels[:, c] != 0
        pred, true = scores[used, c] > 0, labels[used, c] > 0
        tp = float(np.sum(pred & true))
        p.append(tp / pred.sum() if pred.sum() else 0.0)
        r.append(tp / true.sum() if true.sum() else 0.0)
        f.append(2 * p[-1] * r[-1] / (p[-1] + r[-1]) if p[-1] + r[-1] else 0.0)
        n.append(int(true.sum()))
    out = {"precision": p, "recall": r, "f1": f, "support": n}
    w = np.asarray(n, np.float64)
    for avg, weights in (("macro", np.ones(len(n))), ("weighted", w)):
        total = weights.sum()
        out[avg] = {k: float(np.dot(weights, out[k]) / total) if total else 0.0
                    for k in ("precision", "recall", "f1")}
    return out


def top_k_accuracy(scores: np.ndarray, truth: np.ndarray, k: int) -> float:
    """The share of images whose true class is among their ``k`` highest scores (ties
    broken by the lower class index, as argmax)."""
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return float(np.mean(np.any(order == np.asarray(truth)[:, None], axis=1)))


def confusion(predicted, truth, num_classes: int) -> np.ndarray:
    """(C, C) counts: row = true class, column = predicted class."""
    m = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(m, (np.asarray(truth), np.asarray(predicted)), 1)
    return m


# the smallest probability a log-loss takes the log of (scikit-learn's log_loss clips to the
# dtype's eps likewise): a confident mistake costs -log(1e-15) = 34.5, not infinity
PROB_FLOOR = 1e-15


def _truth(prob: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(targets in {0, 1}, weights in {0, 1}) of (N, C) probabilities: one-hot single-label
    labels, or multi-label ones in {1, -1, 0} with 0 (difficult) left out."""
    labels = np.asarray(labels)
    if labels.ndim == 2:
        return (labels > 0).astype(float), (labels != 0).astype(float)
    return np.eye(prob.shape[1])[labels], np.ones_like(prob)


def log_loss(prob, labels) -> float:
    """Mean negative log-likelihood of the true labels: -mean_i log p_i[y_i] for single-label
    (N,) labels; for multi-label (N, C) labels in {1, -1, 0}, the mean binary log-loss over
    the (image, class) pairs that are not 0."""
    prob = np.clip(np.asarray(prob, float), PROB_FLOOR, 1 - PROB_FLOOR)
    t, w = _truth(prob, labels)
    if np.asarray(labels).ndim == 2:
        per = -(t * np.log(prob) + (1 - t) * np.log(1 - prob))
        return float((w * per).sum() / max(w.sum(), 1))
    return float(-(t * np.log(prob)).sum(1).mean())


def brier(prob, labels) -> float:
    """Brier score: mean_i sum_c (p_ic - t_ic)^2 for single-label labels (0 perfect, 2 the
    worst); for multi-label labels the mean (p - t)^2 over the pairs that are not 0."""
    prob = np.asarray(prob, float)
    t, w = _truth(prob, labels)
    sq = w * (prob - t) ** 2
    if np.asarray(labels).ndim == 2:
        return float(sq.sum() / max(w.sum(), 1))
    return float(sq.sum(1).mean())
