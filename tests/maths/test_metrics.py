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


def _naive_prf(pred: np.ndarray, true: np.ndarray) -> tuple[float, float, float, int]:
    """Precision, recall, F1, support of one class's boolean predictions, by their counts."""
    tp, fp, fn = int(np.sum(pred & true)), int(np.sum(pred & ~true)), int(np.sum(~pred & true))
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0), tp + fn


def test_precision_recall_f1_of_single_label_predictions_by_their_counts():
    """Issue 38.4: per-class precision, recall, F1, support and their macro / weighted means,
    against the counts (a class never predicted, and one with no test image, at 0)."""
    from featx.metrics import precision_recall_f1

    rng = np.random.default_rng(3)
    truth = rng.integers(0, 4, 60)  # class 4 of 5 never occurs
    pred = np.where(rng.random(60) < 0.6, truth, rng.integers(0, 3, 60))
    pred[pred == 3] = 0  # class 3 never predicted
    got = precision_recall_f1(pred, truth, 5)
    ref = [_naive_prf(pred == c, truth == c) for c in range(5)]
    for k, name in enumerate(("precision", "recall", "f1", "support")):
        np.testing.assert_allclose(got[name], [r[k] for r in ref], rtol=1e-12)
    support = np.array([r[3] for r in ref], np.float64)
    for k, name in enumerate(("precision", "recall", "f1")):
        vals = np.array([r[k] for r in ref])
        assert got["macro"][name] == pytest.approx(vals.mean(), rel=1e-12)
        assert got["weighted"][name] == pytest.approx(np.dot(vals, support) / support.sum(),
                                                      rel=1e-12)
    assert got["precision"][3] == 0.0 and got["recall"][4] == 0.0 and got["support"][4] == 0


def test_precision_recall_f1_of_multi_label_scores_leaves_difficult_images_out():
    from featx.metrics import precision_recall_f1_multilabel

    rng = np.random.default_rng(4)
    labels = rng.choice([1, -1, 0], size=(40, 3), p=[0.3, 0.6, 0.1])
    scores = rng.normal(size=(40, 3))
    got = precision_recall_f1_multilabel(scores, labels)
    for c in range(3):
        used = labels[:, c] != 0
        ref = _naive_prf(scores[used, c] > 0, labels[used, c] > 0)
        assert [got[k][c] for k in ("precision", "recall", "f1", "support")] == \
            pytest.approx(list(ref), rel=1e-12)
    assert got["macro"]["f1"] == pytest.approx(np.mean(got["f1"]), rel=1e-12)


def test_top_k_accuracy_counts_the_true_class_among_the_k_best():
    from featx.metrics import top_k_accuracy

    rng = np.random.default_rng(5)
    scores, truth = rng.normal(size=(50, 7)), rng.integers(0, 7, 50)
    for k in (1, 3, 5):
        ref = np.mean([truth[i] in np.argsort(-scores[i])[:k] for i in range(50)])
        assert top_k_accuracy(scores, truth, k) == pytest.approx(ref)
    assert top_k_accuracy(scores, truth, 1) == pytest.approx(np.mean(scores.argmax(1) == truth))
