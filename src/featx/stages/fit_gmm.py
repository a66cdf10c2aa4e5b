"""The fit-gmm stage: a diagonal GMM of PCA-reduced local features sampled from shards."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch

from featx import dist
from featx.digest import file_digest
from featx.encoders import LocalSpec
from featx.fit import GaussianMixture
from featx.io import EXTRACTION_KEYS, load_pca, require_fit
from featx.pyramids import check_projection
from featx.io import save_gmm, shard_paths
from featx.sampling import activation_header, sample_local_features
from featx.configs import FitGMMConfig  # noqa: F401 (re-exported)
from featx.stages import FILE, Output, Stage

log = logging.getLogger(__name__)


class FitGMM(Stage):
    """Under torchrun, rank r samples shards r, r + world, ...; every EM step all-reduces
    the sufficient statistics, k-means runs on rank 0
    (:meth:`featx.fit.GaussianMixture.fit_shared`); rank 0 writes the GMM."""

    name, output, polls, distributed = "fit-gmm", FILE, False, True

    def plan(self, inputs: Sequence[str]):
        cfg = self.cfg
        pca, pattrs = load_pca(cfg.pca, self.device)
        pca_digest = file_digest(cfg.pca)
        paths = shard_paths(inputs)
        head = activation_header(paths, pattrs["layer"], pattrs["view"])
        require_fit(head, {k: pattrs[k] for k in EXTRACTION_KEYS}, "the activations",
                    f"{cfg.pca} was fitted on other activations")
        check_projection(head, cfg.pca, pca_digest)
        return paths, head, pca, pattrs, pca_digest

    def inputs_of(self, plan) -> list[Path]:
        return [*plan[0], Path(self.cfg.pca)]

    def work(self, plan, out: Output) -> Iterator[Path]:
        cfg, (paths, head, pca, pattrs, pca_digest) = self.cfg, plan
        t = time.perf_counter()
        group = self.group
        mine, counts = dist.split(paths, group), []
        x = sample_local_features(mine, pattrs["layer"], pattrs["view"],
                                  LocalSpec.parse(pattrs["local"]), cfg.per_image, cfg.seed,
                                  transform=pca.transform, counts=counts,
                                  allow_empty=group.world > 1)
        x = torch.zeros(0, int(pattrs["dim"])) if x is None else torch.from_numpy(x)
        log.info("sampled %d PCA-reduced local features (%d-d) in %.1f s", *x.shape,
                 time.perf_counter() - t)
        t = time.perf_counter()
        gmm = GaussianMixture(n_components=cfg.components, max_iter=cfg.max_iter, tol=cfg.tol,
                              n_init=cfg.n_init, var_floor=cfg.var_floor, random_state=cfg.seed,
                              device=str(self.device)).fit_shared(
            x.to(self.device), group, _places(len(paths), counts, group))
        n_samples = int(sum(c for every in group.objects(counts) for c in every))
        if not group.leader:
            return
        log.info("GMM K=%d fitted in %.1f s, %d iterations, average log-likelihood %.4f",
                 cfg.components, time.perf_counter() - t, gmm.n_iter_, gmm.lower_bound_)
        yield save_gmm(out.path, gmm, out.provenance(
            backbone=head["backbone"], weights=head["weights"],
            input_size=head["input_size"], layer=pattrs["layer"], view=pattrs["view"],
            local=pattrs["local"], dim=pattrs["dim"], pca=str(Path(cfg.pca).resolve()),
            pca_sha256=pca_digest, components=cfg.components, per_image=cfg.per_image,
            n_samples=n_samples, max_iter=cfg.max_iter, tol=cfg.tol, n_init=cfg.n_init,
            var_floor=cfg.var_floor, seed=cfg.seed, shards=[str(p) for p in paths]))


def _places(shards: int, counts: list[int], group: dist.Group) -> torch.Tensor:
    """Where this rank's sampled rows stand in the sample one process would draw (shard
    order): rank r holds shards r, r + world, ... with ``counts`` rows each."""
    per_shard = [0] * shards
    for rank, theirs in enumerate(group.objects(counts)):
        per_shard[rank::group.world] = theirs
    return torch.from_numpy(dist.places(per_shard, group))


def run(inputs: Sequence[str], out: str | Path, cfg: FitGMMConfig, **kw) -> list[Path]:
    """:meth:`FitGMM.run`: fit a GMM on ``inputs``' PCA-reduced local features into ``out``."""
    return FitGMM(cfg).run(inputs, out, **kw)
