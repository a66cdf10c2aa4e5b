"""The fit-pca stage: a PCA of local features sampled from activation shards."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch

from featx import dist
from featx.backbones import get_backbone
from featx.encoders import LocalSpec
from featx.errors import InputError
from featx.fit import PCA
from featx.io import read_header, save_pca, shard_paths
from featx.sampling import activation_header, sample_local_features
from featx.configs import FitPCAConfig  # noqa: F401 (re-exported)
from featx.stages import FILE, Output, Stage

log = logging.getLogger(__name__)


class FitPCA(Stage):
    """Under torchrun, rank r samples shards r, r + world, ...; one all-reduce sums their
    moments (:meth:`featx.fit.PCA.fit_shared`); rank 0 writes the PCA."""

    name, output, polls, distributed = "fit-pca", FILE, False, True

    def plan(self, inputs: Sequence[str]) -> tuple[list[Path], dict, str]:
        paths = shard_paths(inputs)
        layer = self.cfg.layer or _local_layer(paths[0])
        return paths, activation_header(paths, layer, self.cfg.view), layer

    def inputs_of(self, plan) -> list[Path]:
        return plan[0]

    def work(self, plan, out: Output) -> Iterator[Path]:
        cfg, (paths, head, layer) = self.cfg, plan
        bb = get_backbone(head["backbone"])
        spec = LocalSpec.parse(cfg.local or bb.default_local(layer))
        dim = cfg.dim or bb.pca_dim
        t = time.perf_counter()
        group = self.group
        x = sample_local_features(dist.split(paths, group), layer, cfg.view, spec, cfg.per_image,
                                  cfg.seed, allow_empty=group.world > 1)
        if x is not None:
            log.info("sampled %d local features of %d dims in %.1f s", *x.shape,
                     time.perf_counter() - t)
        t = time.perf_counter()
        pca = PCA(n_components=dim, whiten=cfg.whiten, device=str(self.device)).fit_shared(
            None if x is None else torch.from_numpy(x).to(self.device), group)
        log.info("PCA %d -> %d dims in %.1f s; %.1f%% of the variance kept",
                 pca.n_features_in_, dim, time.perf_counter() - t,
                 100 * pca.explained_variance_ratio_.sum().item())
        if not group.leader:
            return
        yield save_pca(out.path, pca, out.provenance(
            backbone=head["backbone"], weights=head["weights"],
            input_size=head["input_size"], layer=layer,
            layer_shape=head["layer_shapes"][layer], view=cfg.view, local=str(spec),
            input_dim=pca.n_features_in_, dim=dim, per_image=cfg.per_image, seed=cfg.seed,
            shards=[str(p) for p in paths]))


def run(inputs: Sequence[str], out: str | Path, cfg: FitPCAConfig, **kw) -> list[Path]:
    """:meth:`FitPCA.run`: fit a PCA on ``inputs``' local features into ``out``."""
    return FitPCA(cfg).run(inputs, out, **kw)


def _local_layer(shard: Path) -> str:
    """The backbone's cross-layer local layer, when these activations hold it."""
    head = read_header(shard)
    pair = get_backbone(head["backbone"]).cross_layer
    if pair and pair[0] in head["layers"]:
        return pair[0]
    raise InputError(f"{shard} holds {', '.join(head['layers'])}, not {head['backbone']}'s "
                     f"cross-layer local layer{f' {pair[0]}' if pair else ''}; pick one with "
                     "--layer")
