"""The classifier beyond the hinge: C chosen by held-out loss among ties, the logistic losses
of the primal solver against scikit-learn, Platt scaling, standardisation, and the
probability metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from featx import metrics, svm
from featx.dist import SINGLE


def _clusters(seed: int, n: int = 90, dim: int = 40, classes: int = 3, spread: float = 0.6):
    """Unit-norm rows around one centre a class (a flat accuracy grid when well apart)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    centres = rng.normal(size=(classes, dim))
    x = centres[labels] + spread * rng.normal(size=(n, dim))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32), labels


def _problem(x, y, s, c, loss):
    blocks = lambda: ((i, x[i:i + 37]) for i in range(0, len(x), 37))  # noqa: E731
    return svm.PrimalProblem(blocks, y, s, x.shape[1], c, torch.device("cpu"), SINGLE, loss)


def _fit(x, y, s, c, loss, form):
    """Weights (C, dim), biases and solver counts by Newton on the rows or on the Gram
    matrix (the weights then W = beta X)."""
    if form == "rows":
        return svm.fit_primal(_problem(x, y, s, c, loss))
    beta, b, info = svm.fit_primal(svm.KernelProblem(svm.gram(x, torch.device("cpu")), y, s,
                                                     c, loss))
    return svm.primal(beta.astype(np.float64), lambda: iter([(0, x)])), b, info


# --- choosing C -------------------------------------------------------------------------------

def test_a_flat_grid_is_decided_by_the_held_out_loss_not_the_grid_order():
    """Clusters every C separates equally well: the old rule (ties to the smaller C) took
    C = 0.01, whose scores all sit near the bias; the held-out hinge loss takes the C that
    separates with a margin."""
    x, labels = _clusters(0)
    k = svm.gram(x, torch.device("cpu"))
    grid = (0.01, 1.0, 100.0)
    c, table, held = svm.choose_c(k, labels, 3, grid, folds=3)
    scores = [table[g][0] for g in grid]
    assert scores == [scores[0]] * 3, table  # flat: accuracy decides nothing
    losses = {g: table[g][1] for g in grid}
    assert c == min(losses, key=losses.get) and c != 0.01
    assert losses[0.01] > 2 * losses[c]  # the degenerate model loses far more
    # what is returned is that C's held-out decision values, and the table is choose()'s
    decisions = {g: svm.choose_c(k, labels, 3, (g,), folds=3)[2] for g in grid}
    np.testing.assert_array_equal(held, decisions[c])
    assert svm.choose(decisions, labels, "hinge") == (c, table)


def test_a_tie_is_within_one_held_out_image_and_a_better_score_still_wins():
    labels = np.array([0, 1] * 50)
    good = np.where(np.eye(2)[labels] > 0, 2.0, -2.0)  # every image right, no hinge loss
    one_wrong = good.copy()
    one_wrong[0] = [-1.0, 1.0]  # image 0 wrong: 0.99
    two_wrong = good * 5
    two_wrong[:2] = good[:2, ::-1] * 0.05  # images 0 and 1 wrong, barely: 0.98
    # within one image (1/100) of the best: the lower held-out loss wins over the score
    c, table = svm.choose({1.0: good * 0.3, 0.1: one_wrong * 10}, labels, "hinge")
    assert table[1.0][0] == 1.0 and table[0.1][0] == 0.99
    assert table[0.1][1] < table[1.0][1] and c == 0.1
    # more than one image behind: the score decides, whatever the loss
    c, table = svm.choose({1.0: good * 0.3, 10.0: two_wrong}, labels, "hinge")
    assert table[10.0][0] == 0.98 and table[10.0][1] < table[1.0][1] and c == 1.0


def test_held_out_loss_is_each_loss_by_hand():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(20, 3)) * 2
    labels = rng.integers(0, 3, 20)
    y = np.where(np.eye(3)[labels] > 0, 1.0, -1.0)
    assert svm.held_out_loss(z, labels, "hinge") == pytest.approx(np.maximum(0, 1 - y * z).mean())
    assert svm.held_out_loss(z, labels, "squared hinge") == pytest.approx(
        (np.maximum(0, 1 - y * z) ** 2).mean())
    assert svm.held_out_loss(z, labels, "logistic") == pytest.approx(np.log1p(np.exp(-y * z)).mean())
    soft = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    assert svm.held_out_loss(z, labels, "multinomial") == pytest.approx(
        -np.log(soft[np.arange(20), labels]).mean())
    # multi-label: difficult (0) pairs left out
    ml = np.where(rng.random((20, 3)) < 0.3, 1, -1)
    ml[:4, 0] = 0
    keep = ml != 0
    assert svm.held_out_loss(z, ml, "hinge") == pytest.approx(
        np.maximum(0, 1 - ml * z)[keep].mean())


# --- the logistic losses against scikit-learn ---------------------------------------------------

def _objective(w, b, x, labels, c, multinomial):
    """scikit-learn's objective, float64: 1/2 |W|^2 + C sum of the log-losses (unpenalised
    intercept)."""
    z = x.astype(np.float64) @ w.astype(np.float64).T + b
    if multinomial:
        lse = np.log(np.exp(z - z.max(1, keepdims=True)).sum(1)) + z.max(1)
        return 0.5 * (w.astype(np.float64) ** 2).sum() + c * (lse - z[np.arange(len(z)), labels]).sum()
    y = np.where(np.eye(w.shape[0])[labels] > 0, 1.0, -1.0)
    return 0.5 * (w.astype(np.float64) ** 2).sum(1) + c * np.logaddexp(0, -y * z).sum(0)


@pytest.mark.parametrize("form", ["rows", "gram"])
@pytest.mark.parametrize("c", [0.1, 1.0, 10.0])
def test_one_vs_rest_logistic_equals_scikit_learn(c, form):
    from sklearn.linear_model import LogisticRegression

    x, labels = _clusters(2, n=120, spread=1.2)
    y, s = svm.targets(labels, 3)
    w, b, _ = _fit(x, y, s, c, "logistic", form)
    ref_w, ref_b = np.zeros_like(w, dtype=np.float64), np.zeros(3)
    for cls in range(3):
        lr = LogisticRegression(C=c, tol=1e-12, max_iter=100_000).fit(
            x.astype(np.float64), labels == cls)
        ref_w[cls], ref_b[cls] = lr.coef_[0], lr.intercept_[0]
    ours, theirs = _objective(w, b, x, labels, c, False), _objective(ref_w, ref_b, x, labels,
                                                                      c, False)
    np.testing.assert_allclose(ours, theirs, rtol=1e-4)
    z, zr = svm.scores(x, w, b), x.astype(np.float64) @ ref_w.T + ref_b
    assert (np.sign(z) == np.sign(zr)).all() and (z.argmax(1) == zr.argmax(1)).all()


@pytest.mark.parametrize("form", ["rows", "gram"])
@pytest.mark.parametrize("c", [0.1, 1.0, 10.0])
def test_multinomial_logistic_equals_scikit_learn(c, form):
    from sklearn.linear_model import LogisticRegression

    x, labels = _clusters(3, n=120, spread=1.2)
    y, s = svm.targets(labels, 3)
    w, b, info = _fit(x, y, s, c, "multinomial", form)
    lr = LogisticRegression(C=c, tol=1e-12, max_iter=100_000).fit(x.astype(np.float64), labels)
    ours = _objective(w, b, x, labels, c, True)
    theirs = _objective(lr.coef_, lr.intercept_, x, labels, c, True)
    assert ours == pytest.approx(theirs, rel=1e-4)
    assert info["objective"] == pytest.approx([ours] * 3, rel=1e-5)  # one problem, said once a class
    assert (svm.scores(x, w, b).argmax(1) == lr.predict(x.astype(np.float64))).all()
    prob = svm.probabilities(svm.scores(x, w, b), "softmax", False)
    np.testing.assert_allclose(prob, lr.predict_proba(x.astype(np.float64)), atol=1e-3)


@pytest.mark.parametrize("form", ["rows", "gram"])
def test_a_row_of_weight_zero_is_left_out(form):
    """Cross-validation's held-out rows: weight 0 trains the model of the other rows (on the
    Gram matrix, their coefficients stay 0)."""
    x, labels = _clusters(5, n=60)
    y, s = svm.targets(labels, 3)
    keep = np.arange(60) >= 15
    w, b, _ = _fit(x, y, s * keep[:, None], 1.0, "multinomial", form)
    y2, s2 = svm.targets(labels[keep], 3)
    w2, b2, _ = _fit(x[keep], y2, s2, 1.0, "multinomial", "rows")
    np.testing.assert_allclose(w, w2, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(b - b.mean(), b2 - b2.mean(), rtol=1e-4, atol=1e-5)


# --- Platt scaling --------------------------------------------------------------------------------

def test_platt_is_scikit_learns_sigmoid_calibration():
    from sklearn.calibration import _sigmoid_calibration

    rng = np.random.default_rng(6)
    labels = rng.integers(0, 2, 200)
    z = np.c_[rng.normal(size=200) + (labels == 0) * 1.5, rng.normal(size=200) + labels * 1.5]
    ours = svm.platt(z, labels)
    for cls in range(2):
        a, b = _sigmoid_calibration(z[:, cls], labels == cls)
        np.testing.assert_allclose(ours[cls], [a, b], rtol=1e-3, atol=1e-4)


def test_calibrated_probabilities_beat_the_raw_sigmoid_on_held_out_photos():
    """An SVM's decision values are not probabilities: Platt scaling fitted on the folds'
    held-out values gives a held-out split a lower log-loss than sigmoid(decision)."""
    x, labels = _clusters(7, n=240, spread=1.6)
    train, test = np.arange(240) < 150, np.arange(240) >= 150
    k = svm.gram(x[train], torch.device("cpu"))
    c, _, held = svm.choose_c(k, labels[train], 3, (0.1, 1.0, 10.0), folds=5)
    w, b = svm.train_ovr(x[train], labels[train], 3, c, k=k)
    z = svm.scores(x[test], w, b)
    calibrated = svm.probabilities(z, "platt", False, svm.platt(held, labels[train]))
    raw = svm.probabilities(z, "sigmoid", False)
    np.testing.assert_allclose(calibrated.sum(1), 1, rtol=1e-12)
    assert metrics.log_loss(calibrated, labels[test]) < metrics.log_loss(raw, labels[test])


# --- standardisation --------------------------------------------------------------------------------

def test_moments_and_folding_score_raw_rows_as_standardised_ones():
    rng = np.random.default_rng(8)
    x = (rng.normal(size=(50, 12)) * rng.uniform(0.1, 3, 12) + rng.normal(size=12)).astype(np.float32)
    x[:, 5] = 0.25  # a constant dimension keeps scale 1, as StandardScaler
    blocks = lambda: ((i, x[i:i + 7]) for i in range(0, 50, 7))  # noqa: E731
    mean, scale = svm.moments(blocks, 12)
    from sklearn.preprocessing import StandardScaler

    ref = StandardScaler().fit(x.astype(np.float64))
    np.testing.assert_allclose(mean, ref.mean_, rtol=1e-10)
    # StandardScaler's scale times sqrt(dim): rows of mean squared norm 1, as L2-normalised
    np.testing.assert_allclose(scale, ref.scale_ * np.sqrt(12), rtol=1e-8)
    xs = np.concatenate([r for _, r in svm.standardized(blocks, mean, scale)()])
    np.testing.assert_allclose(xs, ref.transform(x.astype(np.float64)) / np.sqrt(12), atol=1e-6)
    assert (xs.astype(np.float64) ** 2).sum(1).mean() == pytest.approx(11 / 12, rel=1e-5)
    w, bias = rng.normal(size=(3, 12)).astype(np.float32), rng.normal(size=3)
    wf, bf = svm.fold_standardization(w, bias, mean, scale)
    np.testing.assert_allclose(svm.scores(x, wf, bf), svm.scores(xs, w, bias), atol=1e-4)


# --- probability metrics ----------------------------------------------------------------------------

def test_log_loss_and_brier_equal_scikit_learns():
    from sklearn.metrics import brier_score_loss, log_loss

    rng = np.random.default_rng(9)
    p = rng.dirichlet(np.ones(4), 30)
    labels = rng.integers(0, 4, 30)
    assert metrics.log_loss(p, labels) == pytest.approx(log_loss(labels, p, labels=range(4)))
    assert metrics.brier(p, labels) == pytest.approx(((p - np.eye(4)[labels]) ** 2).sum(1).mean())
    # multi-label: each class its own binary problem, difficult (0) pairs left out
    q = rng.random((30, 2))
    ml = np.where(rng.random((30, 2)) < 0.4, 1, -1)
    ml[:5, 1] = 0
    keep = ml != 0
    assert metrics.log_loss(q, ml) == pytest.approx(log_loss((ml[keep] > 0), q[keep]))
    assert metrics.brier(q, ml) == pytest.approx(brier_score_loss(ml[keep] > 0, q[keep]))
