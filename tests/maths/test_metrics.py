"""featx.metrics against a transcription of VOCdevkit's VOCevalcls."""

from __future__ import annotations

import numpy as np
import pytest

from featx.metrics import accuracy, average_precision, matlab_colon, voc07_ap


# MATLAB's 0:0.1:1, element by element (its colon operator: a + k*d up to the middle, then
# b - k*d from the end): 0.3 is 3*0.1, the others the doubles nearest i/10
COLON_0_01_1 = (0.0, 0.1, 0.2, 3 * 0.1, 0.4, 0.5, 1 - 4 * 0.1, 1 - 3 * 0.1, 1 - 2 * 0.1,
                1 - 0.1, 1.0)


def vocevalcls_ap(out: np.ndarray, gt: np.ndarray) -> float:
    """VOCevalcls.m line by line: [so,si]=sort(-out); tp=gt(si)>0; fp=gt(si)<0; ..."""
    si = np.argsort(-out, kind="stable")  # MATLAB's sort keeps ties in input order
    tp = np.cumsum(gt[si] > 0)
    fp = np.cumsum(gt[si] < 0)
    rec = tp / np.sum(gt > 0)
    with np.errstate(invalid="ignore"):
        prec = tp / (fp + tp)  # NaN where only 'difficult' images were seen so far
    ap = 0.0
    for t in COLON_0_01_1:  # MATLAB's 0:0.1:1
        p = prec[rec >= t]
        p = p[~np.isnan(p)]  # MATLAB's max ignores NaN
        ap += (p.max() if p.size else 0.0) / 11
    return ap


def test_matlab_colon_reproduces_matlabs_own_output():
    # MATLAB (MathWorks Answers, "Floating point accuracy and COLON", 2012):
    # (0:0.1:0.3) - (0:0.1:0.4)(1:end-1) = 1e-16 * [0 0 -0.2776 -0.5551]
    diff = np.subtract(matlab_colon(0, 0.1, 0.3), matlab_colon(0, 0.1, 0.4)[:-1])
    np.testing.assert_allclose(diff / 1e-16, [0, 0, -0.2776, -0.5551], atol=1e-4)
    assert matlab_colon(0, 0.1, 1) == COLON_0_01_1
    assert COLON_0_01_1[6] == 0.6 and COLON_0_01_1[7] == 0.7 and COLON_0_01_1[3] > 0.3


@pytest.mark.parametrize("npos", [10, 150, 200])
def test_recalls_of_exactly_six_and_seven_tenths_reach_their_thresholds(npos):
    """Positives and negatives alternating: precision falls with every positive, so each
    threshold's interpolated precision is the precision where recall first reaches it. A
    threshold computed as 0.6000000000000001 (np.linspace) skips the recall of exactly 0.6."""
    labels = np.tile([1, -1], npos)
    scores = -np.arange(2 * npos, dtype=float)
    k = np.arange(1, npos + 1)
    rec, prec = k / npos, k / (2 * k - 1)  # at each positive
    want = np.mean([prec[rec >= t].max() for t in COLON_0_01_1])
    assert voc07_ap(scores, labels) == pytest.approx(want, abs=1e-15)
    if npos == 10:  # by hand: 0.3 is reached at k = 4 (3/10 < 3*0.1), as in VOCdevkit
        by_hand = (1 + 1 + 2 / 3 + 4 / 7 + 4 / 7 + 5 / 9 + 6 / 11 + 7 / 13 + 8 / 15 + 9 / 17
                   + 10 / 19) / 11
        assert voc07_ap(scores, labels) == pytest.approx(by_hand, abs=1e-15)
    linspace = np.mean([prec[rec >= t].max() for t in np.linspace(0, 1, 11)])
    assert linspace < want  # what the old thresholds gave: a test that can fail


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
