"""Training the pooling-guidance layer of cross-layer pooling scheme 2 (Liu, Shen, van den
Hengel 2016 extension, §"scheme 2").

The local features are the (PCA-reduced) fc activations of densely sampled image regions,
laid out as a spatial map (the pyramid view's dense fc layer). A guidance convolution (K
output channels, k x k, ReLU) computes a_i from the map; the image is represented by
P = sum_i x_i a_i^T (:func:`featx.encoders.guided_pool`), signed square root and L2, and a
linear classifier on P is trained jointly with the guidance: softmax cross-entropy for
single-label data, per-class logistic loss for multi-label data (labels 1 / -1; 0 =
difficult, ignored). AdamW, minibatches, a seeded held-out fraction for early stopping (the
weights of the epoch with the lowest held-out loss are kept). Deterministic on the CPU for a
given seed.

Only the guidance is kept for encoding (featx encode --guidance): the classifier served to
train it, and the final classifier is the SVM trained on the encodings, as for scheme 1.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from featx.dist import SINGLE, Group
from featx.errors import NonFiniteError

from featx.encoders.cross_layer import guided_pool

_EPS = 1e-6  # inside the training square root only: sqrt'(0) is infinite


@dataclass
class Guidance:
    """A guidance layer: conv ``weight`` (K, D, k, k) and ``bias`` (K,), and how it was
    trained (``curve``: one dict per epoch; ``best_epoch``: the one kept, 0 = untrained)."""

    weight: torch.Tensor
    bias: torch.Tensor
    curve: list[dict] = field(default_factory=list)
    best_epoch: int = 0


def init_guidance(dim: int, channels: int, kernel: int, seed: int) -> Guidance:
    """A random guidance layer, as PyTorch initialises a Conv2d (Kaiming-uniform), seeded."""
    if kernel < 1 or kernel % 2 == 0:
        raise ValueError(f"the guidance kernel must be odd, got {kernel}")
    g = torch.Generator().manual_seed(seed)
    fan_in = dim * kernel * kernel
    bound = 1 / math.sqrt(fan_in)
    weight = (torch.rand(channels, dim, kernel, kernel, generator=g) * 2 - 1) * bound
    bias = (torch.rand(channels, generator=g) * 2 - 1) * bound
    return Guidance(weight, bias)


def _pooled(scales: list[torch.Tensor], weight, bias) -> torch.Tensor:
    p = guided_pool(scales, weight, bias)
    p = p.sign() * (p.abs() + _EPS).sqrt()
    return p / p.norm(dim=1, keepdim=True).clamp_min(1e-12)


def _loss(logits: torch.Tensor, y: torch.Tensor, multilabel: bool) -> torch.Tensor:
    if not multilabel:
        return F.cross_entropy(logits, y)
    mask = (y != 0).float()
    loss = F.binary_cross_entropy_with_logits(logits, (y > 0).float(), reduction="none")
    return (loss * mask).sum() / mask.sum().clamp_min(1)


def _loss_sum(logits: torch.Tensor, y: torch.Tensor, multilabel: bool) -> torch.Tensor:
    """:func:`_loss` before its division (by the batch, or by its labelled pairs)."""
    if not multilabel:
        return F.cross_entropy(logits, y, reduction="sum")
    mask = (y != 0).float()
    loss = F.binary_cross_entropy_with_logits(logits, (y > 0).float(), reduction="none")
    return (loss * mask).sum()


def _normaliser(y: torch.Tensor, multilabel: bool) -> float:
    """What :func:`_loss` divides a batch's sum by: its images, or its labelled pairs."""
    return float(max(1, int((y != 0).sum()))) if multilabel else float(len(y))


def _hits(logits: torch.Tensor, y: torch.Tensor, multilabel: bool) -> tuple[float, float]:
    """(right, counted) behind :func:`_score`."""
    if not multilabel:
        return float((logits.argmax(1) == y).sum()), float(len(y))
    mask = y != 0
    return float(((logits > 0) == (y > 0))[mask].sum()), float(mask.sum())


def _score(logits: torch.Tensor, y: torch.Tensor, multilabel: bool) -> float:
    """Held-out accuracy (single-label) or the fraction of labelled (image, class) pairs on
    the right side of 0 (multi-label)."""
    if not multilabel:
        return float((logits.argmax(1) == y).float().mean())
    mask = y != 0
    return float(((logits > 0) == (y > 0))[mask].float().mean()) if mask.any() else float("nan")


def fit_guidance(scales: Sequence[torch.Tensor], labels: np.ndarray, num_classes: int, *,
                 channels: int = 64, kernel: int = 1, epochs: int = 30, batch_size: int = 32,
                 lr: float = 1e-2, weight_decay: float = 1e-4, holdout: float = 0.2,
                 patience: int = 5, seed: int = 0, device: torch.device | str = "cpu",
                 on_epoch: Callable[[dict], None] | None = None, group: Group = SINGLE,
                 rows: np.ndarray | None = None) -> Guidance:
    """Train a guidance layer (module docstring) on region features ``scales`` (one
    (n, N_s, D) tensor per scale, any float dtype, on the CPU) and ``labels`` ((n,) class
    indices, or (n, C) in {1, -1, 0}). ``epochs`` 0 returns the random initialisation.

    Data-parallel over ``group`` (torchrun): ``labels`` are every image's, ``scales`` hold
    this rank's images only, the rows ``rows`` of the whole. Every rank draws the same
    minibatches of the whole, computes its images' share of the batch loss, and the
    gradients and losses are all-reduced: each step, and each epoch's held-out loss (so the
    early stop), is one process's to float rounding, the same on every rank."""
    device = torch.device(device)
    n, dim = len(labels), scales[0].shape[2]
    shared = group.world > 1
    where = np.arange(n) if rows is None else np.full(n, -1)
    if rows is not None:
        where[np.asarray(rows)] = np.arange(len(rows))
    multilabel = labels.ndim == 2
    guidance = init_guidance(dim, channels, kernel, seed)
    if epochs == 0:
        return guidance
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    n_val = int(round(holdout * n)) if holdout > 0 else 0
    if n_val >= n:
        raise ValueError(f"a held-out fraction of {holdout} leaves no image to train on")
    val, train = np.sort(order[:n_val]), order[n_val:]
    y = torch.as_tensor(labels, dtype=torch.float32 if multilabel else torch.long)

    torch.manual_seed(seed)
    weight = guidance.weight.clone().to(device).requires_grad_()
    bias = guidance.bias.clone().to(device).requires_grad_()
    g = torch.Generator().manual_seed(seed + 1)
    bound = 1 / math.sqrt(channels * dim)
    cls_w = ((torch.rand(num_classes, channels * dim, generator=g) * 2 - 1) * bound
             ).to(device).requires_grad_()
    cls_b = torch.zeros(num_classes, device=device, requires_grad=True)
    params = [weight, bias, cls_w, cls_b]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)

    def batch(idx: np.ndarray) -> tuple[list[torch.Tensor], torch.Tensor]:
        """This rank's images of the minibatch ``idx`` (of the whole): features, labels."""
        here = where[idx]
        t, g = torch.as_tensor(here[here >= 0]), torch.as_tensor(idx[here >= 0])
        return [x[t].to(device, torch.float32) for x in scales], y[g].to(device)

    def evaluate(idx: np.ndarray) -> tuple[float, float]:
        if shared:
            return evaluate_shared(idx)
        losses, logits_all, ys = [], [], []
        with torch.no_grad():
            for s in range(0, len(idx), batch_size):
                xs, yb = batch(idx[s:s + batch_size])
                logits = _pooled(xs, weight, bias) @ cls_w.T + cls_b
                losses.append(float(_loss(logits, yb, multilabel)) * len(yb))
                logits_all.append(logits)
                ys.append(yb)
        return sum(losses) / len(idx), _score(torch.cat(logits_all), torch.cat(ys), multilabel)

    def evaluate_shared(idx: np.ndarray) -> tuple[float, float]:
        """:func:`evaluate` over every rank: each batch's loss is its ranks' sums over its
        normaliser; one all-reduce of (loss x images, right, counted)."""
        sums = torch.zeros(3, dtype=torch.float64)
        with torch.no_grad():
            for s in range(0, len(idx), batch_size):
                b = idx[s:s + batch_size]
                xs, yb = batch(b)
                if not len(yb):
                    continue
                logits = _pooled(xs, weight, bias) @ cls_w.T + cls_b
                norm = _normaliser(y[torch.as_tensor(b)], multilabel)
                sums[0] += float(_loss_sum(logits, yb, multilabel)) / norm * len(b)
                sums[1:] += torch.tensor(_hits(logits, yb, multilabel), dtype=torch.float64)
        sums = group.sum(sums)
        return float(sums[0]) / len(idx), (float(sums[1] / sums[2]) if sums[2] > 0
                                           else float("nan"))

    def step_shared(b: np.ndarray) -> float:
        """One optimiser step on minibatch ``b`` over every rank: the batch loss."""
        xs, yb = batch(b)
        opt.zero_grad(set_to_none=True)
        part = torch.zeros((), dtype=torch.float64)
        if len(yb):
            loss = _loss_sum(_pooled(xs, weight, bias) @ cls_w.T + cls_b, yb, multilabel) \
                / _normaliser(y[torch.as_tensor(b)], multilabel)
            loss.backward()
            part = loss.detach().double().cpu()
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        summed = group.sum(torch.cat([g.flatten().cpu() for g in grads] + [part.view(1)]))
        at = 0
        for p in params:
            p.grad = summed[at:at + p.numel()].view_as(p).to(p)
            at += p.numel()
        opt.step()
        return float(summed[-1])

    best = (math.inf, 0, weight.detach().clone(), bias.detach().clone())
    since = 0
    for epoch in range(1, epochs + 1):
        perm = rng.permutation(train)
        total = 0.0
        for s in range(0, len(perm), batch_size):
            if shared:
                b = perm[s:s + batch_size]
                total += step_shared(b) * len(b)
                continue
            xs, yb = batch(perm[s:s + batch_size])
            loss = _loss(_pooled(xs, weight, bias) @ cls_w.T + cls_b, yb, multilabel)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(yb)
        row = {"epoch": epoch, "train_loss": total / len(perm)}
        if n_val:
            row["heldout_loss"], row["heldout_score"] = evaluate(val)
        guidance.curve.append(row)
        if not all(math.isfinite(v) for v in row.values()):
            raise NonFiniteError(f"fit-guidance diverged at epoch {epoch} ({row}); lower --lr "
                                 f"(now {lr:g})")
        if on_epoch is not None:
            on_epoch(row)
        monitored = row.get("heldout_loss", row["train_loss"])
        if monitored < best[0]:
            best, since = (monitored, epoch, weight.detach().clone(), bias.detach().clone()), 0
        else:
            since += 1
            if since >= patience:
                break
    guidance.best_epoch = best[1]
    guidance.weight, guidance.bias = best[2].cpu(), best[3].cpu()
    return guidance
