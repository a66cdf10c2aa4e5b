"""featx.metrics against a transcription of VOCdevkit's VOCevalcls."""

from __future__ import annotations

import numpy as np
import pytest

from featx.metrics import accuracy, average_precision, voc07_ap


def vocevalcls_ap(out: np.ndarray, gt: np.ndarray) -> float:
    """VOCevalcls.m line by line: [so,si]=sort(-out); tp=gt(si)>0; fp=gt(si)<0; ..."""
    si = np.argsort(-out, kind="stable")  # MATLAB's sort keeps ties in input order
    tp = np.cumsum(gt[si] > 0)
    fp = np.cumsum(gt[si] < 0)
    rec = tp / np.sum(gt > 0)
    with np.errstate(invalid="ignore"):
        prec = tp / (fp + tp)  # NaN where only 'difficult' images were seen so far
    ap = 0.0
    for t in np.linspace(0, 1, 11):  # MATLAB's 0:0.1:1 (exact end points)
        p = prec[rec >= t]
        p = p[~np.isnan(p)]  # MATLAB's max ignores NaN
        ap += (p.max() if p.size else 0.0) / 11
    return ap


def test_hand_checked_six_images():
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    labels = np.array([1, -1, 1, 0, -1, 1])
    # ranking without the difficult image: + - + - +; precision 1, .5, 2/3, .5, .6
    assert voc07_ap(scores, labels) == pytest.approx((4 * 1 + 3 * 2 / 3 + 4 * 0.6) / 11)
    assert average_precision(scores, labels) == pytest.approx((1 + 2 / 3 + 0.6) / 3)


def test_matches_vocevalcls_on_random_scores_with_ties_and_difficult_images():
    rng = np.random.default_rng(0)
    for trial in range(30):
        n = int(rng.integers(5, 200))
        scores = np.round(rng.normal(size=(n, 3)), 1)  # many ties
        labels = rng.choice([1, -1, -1, 0], size=(n, 3))
        labels[0] = 1  # every class has a positive
        ours = voc07_ap(scores, labels)
        for c in range(3):
            assert ours[c] == pytest.approx(vocevalcls_ap(scores[:, c], labels[:, c]), abs=1e-12)


def test_all_point_ap_equals_the_step_integral():
    rng = np.random.default_rng(1)
    scores, labels = rng.normal(size=50), rng.choice([1, -1], size=50)
    order = np.argsort(-scores)
    hits = labels[order] > 0
    # all-point AP = mean over positives of the best precision at or beyond their rank
    prec = np.cumsum(hits) / np.arange(1, 51)
    best = np.maximum.accumulate(prec[::-1])[::-1]
    assert average_precision(scores, labels) == pytest.approx(best[hits].mean())


def test_accuracy():
    top1, per_class = accuracy([0, 1, 1, 2, 2, 2], [0, 1, 2, 2, 2, 0], 4)
    assert top1 == pytest.approx(4 / 6)
    np.testing.assert_allclose(per_class[:3], [0.5, 1.0, 2 / 3])
    assert np.isnan(per_class[3])  # no test image of class 3
