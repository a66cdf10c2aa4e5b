"""The fit-pca stage: a PCA of local features sampled from activation shards."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from featx.backbones import get_backbone
from featx.encoders import LocalSpec
from featx.errors import InputError
from featx.params import SEED, Interval, param, validate
from featx.fit import PCA
from featx.io import save_pca, shard_paths
from featx.sampling import activation_header, sample_local_features
from featx.stages import FILE, Output, Stage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FitPCAConfig:
    """``local`` None takes the backbone's default for ``layer``
    (:meth:`featx.backbones.Backbone.default_local`)."""

    layer: str = ""
    view: str = "whole"
    local: str | None = None
    dim: int = param(500, Interval(int, 1))
    per_image: int = param(100, Interval(int, 1))
    whiten: bool = False
    seed: int = param(0, SEED)
    device: str = "auto"
    overwrite: bool = False
    command: str = ""

    def __post_init__(self) -> None:
        if not self.layer:
            raise InputError("fit-pca needs --layer")
        validate(self)
        if self.local is not None:
            LocalSpec.parse(self.local)


class FitPCA(Stage):
    name, output, polls = "fit-pca", FILE, False

    def plan(self, inputs: Sequence[str]) -> tuple[list[Path], dict]:
        paths = shard_paths(inputs)
        return paths, activation_header(paths, self.cfg.layer, self.cfg.view)

    def inputs_of(self, plan) -> list[Path]:
        return plan[0]

    def work(self, plan, out: Output) -> Iterator[Path]:
        cfg, (paths, head) = self.cfg, plan
        spec = LocalSpec.parse(cfg.local or get_backbone(head["backbone"]).default_local(cfg.layer))
        t = time.perf_counter()
        x = sample_local_features(paths, cfg.layer, cfg.view, spec, cfg.per_image, cfg.seed)
        log.info("sampled %d local features of %d dims in %.1f s", *x.shape, time.perf_counter() - t)
        t = time.perf_counter()
        pca = PCA(n_components=cfg.dim, whiten=cfg.whiten, device=str(self.device)).fit(x)
        log.info("PCA %d -> %d dims in %.1f s; %.1f%% of the variance kept", x.shape[1], cfg.dim,
                 time.perf_counter() - t, 100 * pca.explained_variance_ratio_.sum().item())
        yield save_pca(out.path, pca, out.provenance(
            backbone=head["backbone"], weights=head["weights"],
            input_size=head["input_size"], layer=cfg.layer,
            layer_shape=head["layer_shapes"][cfg.layer], view=cfg.view, local=str(spec),
            input_dim=x.shape[1], dim=cfg.dim, per_image=cfg.per_image, seed=cfg.seed,
            shards=[str(p) for p in paths]))


def run(inputs: Sequence[str], out: str | Path, cfg: FitPCAConfig, **kw) -> list[Path]:
    """:meth:`FitPCA.run`: fit a PCA on ``inputs``' local features into ``out``."""
    return FitPCA(cfg).run(inputs, out, **kw)
