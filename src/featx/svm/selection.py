"""How C is chosen: k-fold cross-validation folds, the held-out score (top-1, or 11-point mAP) and the model's own held-out loss, the rule that picks C from them; for the dual (on the Gram matrix) and the primal."""

from __future__ import annotations

import logging

import numpy as np
import torch

from featx.svm.dual import _fit, binary_targets, targets
from featx.svm.losses import LOSSES
from featx.svm.newton import fit_primal

log = logging.getLogger(__name__)


def choose_c(k: np.ndarray, labels: np.ndarray, num_classes: int, cs, folds: int = 5,
             include_difficult: bool = False, seed: int = 0
             ) -> tuple[float, dict[float, tuple[float, float]], np.ndarray]:
    """C by k-fold cross-validation on the training split's Gram matrix (no new products):
    :func:`choose` on the held-out decision values of every C (hinge loss). Returns (C,
    {C: (score, held-out loss)}, the held-out decision values of that C)."""
    splits = cv_splits(labels, folds, seed)
    decisions: dict[float, np.ndarray] = {}
    for c in cs:
        decision = np.zeros((len(labels), num_classes))
        for train, val in splits:
            for cls, (idx, y) in enumerate(binary_targets(labels[train], num_classes,
                                                          include_difficult)):
                if len(np.unique(y)) < 2:  # a fold without positives (or negatives)
                    decision[val, cls] = y[0] if len(y) else -1.0
                    continue
                support, alpha_y, bias = _fit(k[np.ix_(train, train)], idx, y, c)
                decision[val, cls] = k[np.ix_(val, train[idx[support]])] @ alpha_y + bias
        decisions[float(c)] = decision
    c, table = choose(decisions, labels, "hinge", include_difficult)
    return c, table, decisions[c]


def fold_count(labels: np.ndarray, folds: int) -> int:
    """The folds cross-validation uses: ``folds``, or as many as the smallest class of
    single-label ``labels`` allows (2 at least)."""
    if labels.ndim == 2:
        return folds
    smallest = int(np.bincount(labels).min(initial=len(labels))) if len(labels) else 0
    return max(2, min(folds, smallest))


def cv_splits(labels: np.ndarray, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The (train, validation) rows of each fold: stratified by class for single-label
    labels (in as many folds as the smallest class allows), shuffled by ``seed``."""
    from sklearn.model_selection import KFold, StratifiedKFold

    if labels.ndim == 2:
        splitter = KFold(folds, shuffle=True, random_state=seed)
    else:
        smallest = int(np.bincount(labels).min(initial=len(labels))) if len(labels) else 0
        usable = fold_count(labels, folds)
        if usable < folds:
            log.warning("cross-validation in %d folds, not %d: the smallest class has %d "
                        "training image(s)", usable, folds, smallest)
        splitter = StratifiedKFold(usable, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(labels)), None if labels.ndim == 2 else labels))


def cv_score(decision: np.ndarray, labels: np.ndarray) -> float:
    """Mean 11-point AP (multi-label; a class with no positive has no AP, the mean is over
    the others, for every C alike) or top-1 accuracy of held-out decision values."""
    from featx.metrics import voc07_ap

    if labels.ndim == 2:
        ap = voc07_ap(decision, labels)
        return float(np.nanmean(ap)) if np.isfinite(ap).any() else 0.0
    return float((decision.argmax(1) == labels).mean())


def held_out_loss(decision: np.ndarray, labels: np.ndarray, loss: str,
                  include_difficult: bool = False) -> float:
    """The mean loss of held-out decision values (n, C) under the loss the model was trained
    with (:data:`LOSSES`): per (image, class) for the one-vs-rest losses, over the images
    a class was trained on; per image for the multinomial loss."""
    y, s = targets(labels, decision.shape[1], include_difficult)
    z = torch.from_numpy(np.asarray(decision, np.float64))
    per = LOSSES[loss].rows(torch.from_numpy(y), torch.from_numpy(s), z).numpy()
    return float(per.sum() / max(s.sum() if not LOSSES[loss].joint else len(z), 1))


def choose(decisions: dict[float, np.ndarray], labels: np.ndarray, loss: str,
           include_difficult: bool = False) -> tuple[float, dict[float, tuple[float, float]]]:
    """The C of the best held-out score (mean 11-point AP for multi-label labels, top-1
    accuracy for single-label); among the Cs within one held-out image of it (1/n of the
    score), the one of the lowest mean held-out loss (:func:`held_out_loss`), then the
    smaller C. On a flat grid the loss decides: a C so small that every score sits at the
    bias ranks as well but loses far more. Returns (C, {C: (score, loss)})."""
    table = {c: (cv_score(d, labels), held_out_loss(d, labels, loss, include_difficult))
             for c, d in decisions.items()}
    return best_c(table, len(labels)), table


def best_c(table: dict[float, tuple[float, float]], n: int) -> float:
    """The C of the best score; ties (within 1/n, one of n held-out images) to the lowest
    held-out loss, then to the smaller C."""
    top = max(score for score, _ in table.values())
    tied = [c for c, (score, _) in table.items() if score >= top - 1 / n - 1e-12]
    return min(tied, key=lambda c: (table[c][1], c))


def choose_c_primal(make_problem, labels: np.ndarray, places: np.ndarray, num_classes: int,
                    cs, folds: int = 5, include_difficult: bool = False, seed: int = 0,
                    group=None, loss: str = "squared hinge"
                    ) -> tuple[float, dict[float, tuple[float, float]], np.ndarray]:
    """:func:`choose_c` with the primal solver: the same folds (over every rank's rows,
    ``labels``), each fold's validation rows left out of training by a zero weight;
    ``make_problem(y, s, c)`` builds this rank's :class:`PrimalProblem` (rows ``places`` of
    the whole) of loss ``loss``. The decisions are gathered to score every C alike on every
    rank."""
    splits = cv_splits(labels, folds, seed)
    y, s = targets(labels[places], num_classes, include_difficult)
    decisions: dict[float, np.ndarray] = {}
    for c in cs:
        decision = np.zeros((len(places), num_classes))
        for _, val in splits:
            held = np.isin(places, val)
            problem = make_problem(y, s * ~held[:, None], c)
            w, b, _ = fit_primal(problem)
            z = problem.margins(torch.from_numpy(w).double(), torch.from_numpy(b)).numpy()
            decision[held] = z[held]
        whole = np.zeros((len(labels), num_classes))
        for where, part in (group.objects((places, decision)) if group else [(places, decision)]):
            whole[where] = part
        decisions[float(c)] = whole
    c, table = choose(decisions, labels, loss, include_difficult)
    return c, table, decisions[c]
