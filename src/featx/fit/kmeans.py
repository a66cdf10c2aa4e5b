"""k-means++ seeding and Lloyd iterations: the initialisation of :class:`GaussianMixture`."""

from __future__ import annotations

import math

import torch

from featx.fit._base import batches

_BATCH = 65536


def kmeans_pp(x: torch.Tensor, k: int, gen: torch.Generator, trials: int | None = None
              ) -> torch.Tensor:
    """Greedy k-means++ seeding (Arthur & Vassilvitskii 2007; 2 + log k trials per centre)."""
    n = x.shape[0]
    trials = trials or 2 + int(math.log(k))
    sq = x.pow(2).sum(1)
    first = torch.randint(n, (1,), generator=gen, device="cpu").item()
    centres = [x[first]]
    closest = (sq - 2 * x @ x[first] + sq[first]).clamp_min(0)
    for _ in range(1, k):
        pot = closest.sum()
        probs = closest / pot if pot > 0 else torch.full_like(closest, 1 / n)
        cand = torch.multinomial(probs.cpu(), trials, replacement=True, generator=gen).to(x.device)
        d = (sq[None] - 2 * x[cand] @ x.T + sq[cand, None]).clamp_min(0)
        new = torch.minimum(closest[None], d)
        best = new.sum(1).argmin()
        closest = new[best]
        centres.append(x[cand[best]])
    return torch.stack(centres)


def nearest(x: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """Index of each row's nearest centre; |c|^2 - 2 x.c ranks centres as |x - c|^2 does."""
    return torch.addmm(centres.pow(2).sum(1)[None], x, centres.T, alpha=-2).argmin(1)


def kmeans(x: torch.Tensor, k: int, gen: torch.Generator, iters: int = 100,
           tol: float = 1e-4, sample: int | None = None) -> torch.Tensor:
    """k-means++ seeding, then Lloyd iterations until the centres move less than ``tol`` x the
    mean variance (scikit-learn's criterion) or ``iters`` are done; both on a random subsample
    of ``sample`` rows (default max(100 k, 100,000)), or all rows where there are fewer.
    Returns (k, D) centres."""
    pick = subsample(x.shape[0], k, gen, sample)
    return lloyd(x if pick is None else x[pick.to(x.device)], k, gen, iters, tol)


def subsample(n: int, k: int, gen: torch.Generator, sample: int | None = None
              ) -> torch.Tensor | None:
    """The rows :func:`kmeans` runs on (of ``n``), in order; None for all of them."""
    sample = sample or max(100 * k, 100_000)
    return torch.randperm(n, generator=gen)[:sample] if n > sample else None


def lloyd(x: torch.Tensor, k: int, gen: torch.Generator, iters: int = 100, tol: float = 1e-4
          ) -> torch.Tensor:
    """k-means++ seeding and Lloyd iterations on all of ``x`` (see :func:`kmeans`)."""
    centres = kmeans_pp(x, k, gen)
    tol_abs = tol * x.var(0).mean().item()
    for _ in range(iters):
        sums = torch.zeros_like(centres, dtype=torch.float64)
        counts = torch.zeros(k, dtype=torch.float64, device=x.device)
        for s in batches(x.shape[0], _BATCH):
            lab = nearest(x[s], centres)
            sums += torch.zeros_like(centres).index_add_(0, lab, x[s]).double()
            counts += torch.bincount(lab, minlength=k).double()
        empty = counts == 0
        new = torch.where(empty[:, None], centres, (sums / counts.clamp_min(1)[:, None]).float())
        shift, centres = (new - centres).pow(2).sum().item(), new
        if shift <= tol_abs:
            break
    return centres
