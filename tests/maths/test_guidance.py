"""Cross-layer pooling scheme 2: guided pooling against a naive loop, contributions, and the
guidance training on a synthetic task where one channel pattern decides the label."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from featx import svm
from featx.encoders import contributions, cross_layer_pool, guided_pool, normalize
from featx.fit import fit_guidance, init_guidance


def _naive_guided(scales, weight, bias):
    """P = sum over scales and positions of outer(a_i, x_i), a_i = ReLU(W * x around i + b)
    computed position by position with zero padding."""
    k, d, m, _ = weight.shape
    r = m // 2
    out = torch.zeros(scales[0].shape[0], k * d, dtype=torch.float64)
    for x in scales:
        b, n, _ = x.shape
        h = int(round(n ** 0.5))
        grid = x.double().view(b, h, h, d)
        padded = torch.zeros(b, h + 2 * r, h + 2 * r, d, dtype=torch.float64)
        padded[:, r:r + h, r:r + h] = grid
        for img in range(b):
            for i in range(h):
                for j in range(h):
                    patch = padded[img, i:i + m, j:j + m]  # (m, m, d)
                    a = torch.relu(torch.einsum("kdij,ijd->k", weight.double(), patch)
                                   + bias.double())
                    out[img] += torch.outer(a, grid[img, i, j]).flatten()
    return out


@pytest.mark.parametrize("kernel", [1, 3])
def test_guided_pool_equals_the_naive_loop(kernel):
    g = torch.Generator().manual_seed(0)
    scales = [torch.randn(2, n, 5, generator=g) for n in (9, 16)]
    guidance = init_guidance(5, 4, kernel, seed=1)
    got = guided_pool(scales, guidance.weight, guidance.bias)
    ref = _naive_guided(scales, guidance.weight, guidance.bias)
    assert got.shape == (2, 20)
    np.testing.assert_allclose(got.double(), ref, rtol=1e-5, atol=1e-5)


def test_contributions_sum_to_the_linear_score():
    g = torch.Generator().manual_seed(0)
    local, guide = torch.randn(3, 12, 6, generator=g), torch.rand(3, 12, 4, generator=g)
    w = torch.randn(24, generator=g)
    c = contributions(local, guide, w)
    assert c.shape == (3, 12)
    np.testing.assert_allclose(c.sum(1), cross_layer_pool(local, guide) @ w, rtol=1e-5)


def _synthetic(n: int, seed: int):
    """8x8 maps of 6-d region features. A few 'object' regions carry a large channel 0; the
    label is the sign of channel 1 at those regions. Elsewhere channel 1 is loud noise, so
    only pooling guided by channel 0 separates the classes."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, (n, 64, 6)).astype(np.float32)
    x[:, :, 0] = rng.normal(-1, 0.3, (n, 64))
    x[:, :, 1] *= 3
    y = rng.integers(0, 2, n)
    for i in range(n):
        obj = rng.choice(64, 4, replace=False)
        x[i, obj, 0] = rng.normal(3, 0.3, 4)
        x[i, obj, 1] = (1 if y[i] else -1) * rng.uniform(0.5, 1.5, 4)
    return torch.from_numpy(x), y


def _svm_accuracy(guidance, train, test) -> float:
    def enc(x):
        return normalize(guided_pool([x], guidance.weight, guidance.bias)).numpy()

    w, b = svm.train_ovr(enc(train[0]), train[1], 2, c=10.0)
    return float(np.mean(svm.scores(enc(test[0]), w, b).argmax(1) == test[1]))


def test_training_learns_the_guiding_pattern():
    train, test = _synthetic(300, 0), _synthetic(200, 1)
    trained = fit_guidance([train[0]], train[1], 2, channels=4, kernel=1, epochs=40,
                           batch_size=32, lr=1e-2, holdout=0.2, patience=8, seed=0)
    random = fit_guidance([train[0]], train[1], 2, channels=4, kernel=1, epochs=0, seed=0)
    curve = trained.curve
    assert curve[-1]["train_loss"] < 0.5 * curve[0]["train_loss"]  # the loss falls
    assert max(r["heldout_score"] for r in curve) > 0.9  # held-out accuracy, chance 0.5
    assert trained.best_epoch == min(range(1, len(curve) + 1),
                                     key=lambda e: curve[e - 1]["heldout_loss"])
    acc_trained = _svm_accuracy(trained, train, test)
    acc_random = _svm_accuracy(random, train, test)
    assert acc_trained > 0.9 and acc_trained > acc_random + 0.15, (acc_trained, acc_random)


def test_training_is_deterministic_and_random_guidance_is_the_initialisation():
    x, y = _synthetic(60, 2)
    a = fit_guidance([x], y, 2, channels=3, epochs=2, seed=5)
    b = fit_guidance([x], y, 2, channels=3, epochs=2, seed=5)
    assert torch.equal(a.weight, b.weight) and a.curve == b.curve
    r = fit_guidance([x], y, 2, channels=3, epochs=0, seed=5)
    assert torch.equal(r.weight, init_guidance(6, 3, 1, seed=5).weight) and r.curve == []


def test_multilabel_loss_ignores_difficult_labels():
    """Per-class logistic loss over the labelled (image, class) pairs only: 0 (difficult)
    entries change nothing, whatever the logits there."""
    from featx.fit.guidance import _loss

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 3, generator=g)
    y = torch.tensor([[1, -1, 0], [0, 1, -1], [-1, -1, 1], [1, 0, 0], [-1, 1, 1], [0, 0, -1.0]])
    mask = y != 0
    ref = torch.nn.functional.binary_cross_entropy_with_logits(logits[mask], (y[mask] > 0).float())
    torch.testing.assert_close(_loss(logits, y, True), ref)
    other = logits.clone()
    other[~mask] = 100.0
    torch.testing.assert_close(_loss(other, y, True), ref)

