"""featx.svm: separable data, agreement with scikit-learn, the VOC 'difficult' rule."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr
from sklearn.svm import LinearSVC

from featx.errors import InputError
from featx.svm import gram, scores, train_ovr


def test_gram_is_x_xt():
    x = np.random.default_rng(0).normal(size=(30, 40000)).astype(np.float32)
    np.testing.assert_allclose(gram(x, __import__("torch").device("cpu")),
                               x.astype(np.float64) @ x.T.astype(np.float64), rtol=1e-5,
                               atol=1e-2)


def test_separates_linearly_separable_classes():
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(3, 500)) * 3
    y = rng.integers(0, 3, 300)
    x = (centres[y] + rng.normal(size=(300, 500))).astype(np.float32)
    w, b = train_ovr(x, y, 3, c=1.0)
    assert (scores(x, w, b).argmax(1) == y).all()
    test_y = rng.integers(0, 3, 100)
    test_x = (centres[test_y] + rng.normal(size=(100, 500))).astype(np.float32)
    assert (scores(test_x, w, b).argmax(1) == test_y).mean() > 0.95


def test_ranking_matches_linearsvc():
    rng = np.random.default_rng(0)
    w_true = rng.normal(size=(2, 200))
    x = rng.normal(size=(1500, 200)).astype(np.float32)
    y = np.argmax(x @ w_true.T + rng.normal(size=(1500, 2)) * 8, 1)
    w, b = train_ovr(x, y, 2, c=0.1)
    ours = scores(x, w, b)
    for c in range(2):
        ref = LinearSVC(C=0.1, loss="hinge", dual=True, max_iter=20_000, tol=1e-5,
                        intercept_scaling=100).fit(x, np.where(y == c, 1, -1)).decision_function(x)
        assert spearmanr(ours[:, c], ref)[0] > 0.99


def test_difficult_images_are_left_out_by_default():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(60, 30)).astype(np.float32)
    labels = rng.choice([1, -1], size=(60, 2))
    labels[:10, 0] = 0
    w, b = train_ovr(x, labels, 2)
    w_ref, b_ref = train_ovr(x[10:], labels[10:, :1], 1)
    np.testing.assert_allclose(w[0], w_ref[0], atol=1e-4)
    w_inc, _ = train_ovr(x, labels, 2, include_difficult=True)
    assert not np.allclose(w_inc[0], w[0], atol=1e-4)
    with pytest.raises(InputError, match="no positive"):
        train_ovr(x, -np.ones((60, 1), int), 1)


def test_cross_validation_picks_the_c_that_is_clearly_right():
    """Positives at x1 = +0.1 with x2 = +5 or -3, negatives at x1 = -0.1, x2 = 0: the class
    means differ mostly along x2, so a tiny C (w ~ the mean difference) misranks the x2 = -3
    positives; a large C finds the margin along x1."""
    from featx.svm import choose_c

    rng = np.random.default_rng(0)
    n = 40
    pos = np.c_[np.full(n, 0.1), np.where(np.arange(n) % 2, 5.0, -3.0)]
    neg = np.c_[np.full(n, -0.1), np.zeros(n)]
    x = (np.r_[pos, neg] + rng.normal(size=(2 * n, 2)) * 0.01).astype(np.float32)
    y = np.r_[np.zeros(n, int), np.ones(n, int)]
    k = gram(x, __import__("torch").device("cpu"))
    c, cv, _ = choose_c(k, y, 2, (1e-4, 1e3), folds=4)
    assert c == 1e3 and cv[1e3][0] == 1.0 and cv[1e-4][0] < 0.8
    # multi-label labels in {1, -1}: scored by mean 11-point AP
    c, cv, _ = choose_c(k, np.where(np.eye(2, dtype=int)[y] == 1, 1, -1), 2, (1e-4, 1e3),
                        folds=4)
    assert c == 1e3 and cv[1e3][0] == 1.0 and cv[1e-4][0] < 0.8


def test_full_ties_go_to_the_smaller_c():
    """Separated by far more than the margin: every C finds the same hard-margin SVM (no
    bound binds), so score and held-out loss are equal; the smaller C is taken."""
    from featx.svm import choose_c

    rng = np.random.default_rng(4)
    y = np.repeat(np.arange(2), 10)
    x = (np.eye(2)[y] * 50 + rng.normal(size=(20, 2)) * 0.01).astype(np.float32)
    k = gram(x, __import__("torch").device("cpu"))
    c, cv, _ = choose_c(k, y, 2, (10.0, 1.0, 100.0), folds=2)
    assert {v[0] for v in cv.values()} == {1.0} and len({v[1] for v in cv.values()}) == 1
    assert c == 1.0


def _blocks(x, rows):
    return lambda: iter([(i, x[i:i + rows]) for i in range(0, len(x), rows)])


@pytest.mark.parametrize("rows", [1, 7, 30, 100])
def test_streamed_gram_equals_the_in_memory_one(rows):
    import torch

    from featx.svm import gram_blocks

    x = np.random.default_rng(3).normal(size=(30, 20000)).astype(np.float32)
    exact = x.astype(np.float64) @ x.T.astype(np.float64)
    got = gram_blocks(_blocks(x, rows), 30, torch.device("cpu"))
    # float32 products summed in float64, as the in-memory gram (test_gram_is_x_xt)
    np.testing.assert_allclose(got, exact, rtol=1e-5, atol=1e-2)
    np.testing.assert_array_equal(got, got.T)


def test_streamed_primal_weights_equal_the_in_memory_ones():
    from featx.svm import fit_dual, primal

    rng = np.random.default_rng(4)
    x = rng.normal(size=(40, 300)).astype(np.float32)
    y = rng.integers(0, 3, 40)
    w, b = train_ovr(x, y, 3)
    coefs, b2 = fit_dual(gram(x, __import__("torch").device("cpu")), y, 3)
    np.testing.assert_allclose(primal(coefs, _blocks(x, 9)), w, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(b, b2)


# --- the primal solver -----------------------------------------------------------------------

def _squared_hinge_dual(x, y, s, c):
    """The same problem solved in the dual: an L2-loss SVM is a hard-margin SVM on the kernel
    K + I / (2C) (libsvm with an upper bound that never binds), rows of weight 0 left out."""
    from sklearn.svm import SVC

    k = x.astype(np.float64) @ x.T.astype(np.float64)
    w, b = np.zeros((y.shape[1], x.shape[1])), np.zeros(y.shape[1])
    for cls in range(y.shape[1]):
        idx = np.nonzero(s[:, cls])[0]
        svm = SVC(C=1e8, kernel="precomputed", tol=1e-8).fit(
            k[np.ix_(idx, idx)] + np.eye(len(idx)) / (2 * c), y[idx, cls])
        w[cls] = svm.dual_coef_[0] @ x[idx[svm.support_]].astype(np.float64)
        b[cls] = svm.intercept_[0]
    return w, b


def _problem(x, y, s, c, rows=97):
    import torch

    from featx.dist import SINGLE
    from featx.svm import PrimalProblem

    blocks = lambda: ((i, x[i:i + rows]) for i in range(0, len(x), rows))  # noqa: E731
    return PrimalProblem(blocks, y, s, x.shape[1], c, torch.device("cpu"), SINGLE)


@pytest.mark.parametrize("c", [0.1, 1.0, 10.0])
@pytest.mark.parametrize("multilabel", [False, True])
def test_primal_reaches_the_optimum_the_dual_finds(c, multilabel):
    from featx.svm import fit_primal, primal_objective, targets

    rng = np.random.default_rng(3)
    n, dim = 240, 300
    x = rng.normal(size=(n, dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    if multilabel:  # VOC-like: 1/-1 and difficult (0) images left out of their class
        labels = rng.choice([1, -1, 0], size=(n, 3), p=[0.3, 0.6, 0.1])
    else:
        labels = rng.integers(0, 3, n)
    x[:, :3] += 0.2 * (labels == 1 if multilabel else np.eye(3)[labels])
    y, s = targets(labels, 3)
    w, b, info = fit_primal(_problem(x, y, s, c))
    wd, bd = _squared_hinge_dual(x, y, s, c)
    ours, dual = primal_objective(w, b, x, y, s, c), primal_objective(wd, bd, x, y, s, c)
    np.testing.assert_allclose(ours, dual, rtol=1e-4)
    assert info["objective"] == pytest.approx(list(ours), rel=1e-5)
    z, zd = scores(x, w, b), x @ wd.T.astype(np.float32) + bd
    if multilabel:
        assert (np.sign(z) == np.sign(zd)).mean() > 0.995
    else:
        assert (z.argmax(1) == zd.argmax(1)).all()


def test_primal_cross_validation_uses_the_dual_folds():
    from featx.svm import choose, choose_c_primal, cv_splits, fit_primal, targets

    rng = np.random.default_rng(4)
    labels = rng.integers(0, 2, 60)
    x = (rng.normal(size=(60, 20)) + 1.5 * labels[:, None]).astype(np.float32)
    c, cv, held = choose_c_primal(lambda y, s, c: _problem(x, y, s, c), labels, np.arange(60),
                                  2, (0.001, 1.0), folds=3)
    # the same by hand: each fold's held-out rows scored by a model trained without them
    expect, decisions = {}, {}
    for cc in (0.001, 1.0):
        decision = np.zeros((60, 2))
        for train, val in cv_splits(labels, 3, 0):
            y, s = targets(labels, 2)
            s[val] = 0
            w, b, _ = fit_primal(_problem(x, y, s, cc))
            decision[val] = scores(x[val], w, b)
        expect[cc] = float((decision.argmax(1) == labels).mean())
        decisions[cc] = decision
    assert {k: v[0] for k, v in cv.items()} == pytest.approx(expect)
    assert c == choose(decisions, labels, "squared hinge")[0]
    np.testing.assert_allclose(held, decisions[c], rtol=1e-5, atol=1e-6)


def test_primal_needs_both_labels_per_class():
    from featx.svm import check_both_labels, targets

    labels = np.ones((10, 2), int)
    labels[:5, 1] = -1
    with pytest.raises(InputError, match="class 0 has no negative"):
        check_both_labels(*targets(labels, 2))


def test_primal_memory_does_not_grow_with_n_squared(tmp_path):
    """Peak memory of the primal solver at n = 2,000 and n = 8,000 (16-d rows, 3 classes):
    an n x n float64 matrix would add 480 MB; the rows themselves add 0.4 MB."""
    import subprocess
    import sys

    script = (
        "import resource, numpy as np, torch, sys\n"
        "from featx.dist import SINGLE\n"
        "from featx import svm\n"
        "from featx.svm import dual, newton, selection\n"
        "for mod in (svm, dual, newton, selection):\n"  # wherever a name could be called from
        "    for name in ('gram', 'gram_blocks', '_cross'):\n"
        "        setattr(mod, name, lambda *a, **k: (_ for _ in ()).throw(AssertionError(name)))\n"
        "n = int(sys.argv[1]); rng = np.random.default_rng(0)\n"
        "labels = rng.integers(0, 3, n); x = rng.normal(size=(n, 16)).astype(np.float32)\n"
        "x[:, :3] += np.eye(3)[labels]\n"
        "y, s = svm.targets(labels, 3)\n"
        "blocks = lambda: ((i, x[i:i + 500]) for i in range(0, n, 500))\n"
        "svm.fit_primal(svm.PrimalProblem(blocks, y, s, 16, 1.0, torch.device('cpu'), SINGLE))\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n")
    peak = {}
    for n in (2000, 8000):
        res = subprocess.run([sys.executable, "-c", script, str(n)], capture_output=True,
                             text=True, check=True)
        peak[n] = int(res.stdout.split()[-1]) / 1024  # MB
    assert peak[8000] - peak[2000] < 40, peak
