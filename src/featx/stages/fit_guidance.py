"""The fit-guidance stage: the trained pooling-guidance layer of cross-layer pooling scheme 2
(:mod:`featx.fit.guidance`) on the dense pyramid vectors of labelled activation shards."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from featx import dist
from featx.digest import file_digest
from featx.errors import InputError
from featx.fit import fit_guidance
from featx.io import EXTRACTION_KEYS, load_pca, require_fit
from featx.pyramids import check_projection
from featx.io import read_header, save_guidance, shard_paths
from featx.sampling import activation_header, region_features
from featx.configs import FitGuidanceConfig  # noqa: F401 (re-exported)
from featx.stages import FILE, Output, Stage

log = logging.getLogger(__name__)


class FitGuidance(Stage):
    """Under torchrun, data-parallel: rank r reads the region vectors of shards r, r + world,
    ...; every minibatch's gradients and every held-out loss are all-reduced
    (:func:`featx.fit.fit_guidance`); rank 0 writes the guidance."""

    name, output, polls, distributed = "fit-guidance", FILE, False, True
    unit = "epoch"

    def plan(self, inputs: Sequence[str]):
        cfg, device = self.cfg, self.device
        paths = shard_paths(inputs)
        layer = cfg.layer or _only_layer(paths[0])
        first = activation_header(paths, layer, "pyramid")
        if first.get("label_kind") not in ("single", "multi"):
            raise InputError("fit-guidance trains on labels; these activations have none (extract "
                             "from a --dataset or a folder of class folders)")
        pca, pca_digest = None, first.get("projected") or ""
        if not pca_digest:
            if not cfg.pca:
                raise InputError("the pyramid vectors are stored unprojected: pass --pca (a pyramid "
                                 "PCA from fit-pca --view pyramid --local dense)")
            pca, pattrs = load_pca(cfg.pca, device)
            require_fit(pattrs, {**{k: first[k] for k in EXTRACTION_KEYS}, "layer": layer,
                                 "view": "pyramid", "local": "dense"}, cfg.pca,
                        "fit the PCA on these activations' pyramid")
            pca_digest = file_digest(cfg.pca)
        elif cfg.pca:
            check_projection(first, cfg.pca, file_digest(cfg.pca))
        return paths, layer, first, pca, pca_digest

    def inputs_of(self, plan) -> list[Path]:
        return [*plan[0], *([Path(self.cfg.pca)] if self.cfg.pca else [])]

    def work(self, plan, out: Output) -> Iterator[Path]:
        cfg, device, (paths, layer, first, pca, pca_digest) = self.cfg, self.device, plan
        target = out.path
        t = time.perf_counter()
        group = self.group
        ids, scales, labels, rows = _region_share(paths, layer, cfg.scales,
                                                  pca.transform if pca is not None else None,
                                                  group)
        sizes = first["pyramid_sizes"]
        chosen = list(range(len(sizes))) if cfg.scales is None else list(cfg.scales)
        log.info("read %d images' region features (%s vectors of %d-d) in %.1f s", len(ids),
                 "+".join(str(x.shape[1]) for x in scales), scales[0].shape[2],
                 time.perf_counter() - t)
        classes = first.get("classes", [])
        num_classes = labels.shape[1] if labels.ndim == 2 else max(len(classes),
                                                                   int(labels.max()) + 1)
        advance = out.start("fit-guidance", cfg.epochs or None)

        def on_epoch(row: dict) -> None:
            log.debug("epoch %d: %s", row["epoch"], row)
            advance(1, note=", ".join(f"{k.replace('_', ' ')} {v:.3f}" for k, v in row.items()
                                      if k != "epoch"))

        t = time.perf_counter()
        guidance = fit_guidance(
            scales, labels, num_classes, channels=cfg.channels, kernel=cfg.kernel,
            epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr,
            weight_decay=cfg.weight_decay, holdout=cfg.holdout, patience=cfg.patience,
            seed=cfg.seed, device=device, on_epoch=on_epoch, group=group, rows=rows)
        if guidance.curve:
            last = guidance.curve[guidance.best_epoch - 1]
            log.info("guidance K=%d, %dx%d, trained %d epochs in %.1f s; kept epoch %d: %s",
                     cfg.channels, cfg.kernel, cfg.kernel, len(guidance.curve),
                     time.perf_counter() - t, guidance.best_epoch,
                     ", ".join(f"{k} {v:.4f}" for k, v in last.items() if k != "epoch"))
        if not group.leader:
            return
        yield save_guidance(target, guidance, out.provenance(
            **{k: first[k] for k in EXTRACTION_KEYS}, layer=layer,
            view="pyramid", pyramid_sizes=[sizes[s] for s in chosen], scales=chosen,
            dim=int(scales[0].shape[2]), pca=str(Path(cfg.pca).resolve()) if cfg.pca else "",
            pca_sha256=pca_digest, channels=cfg.channels, kernel=cfg.kernel,
            epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr,
            weight_decay=cfg.weight_decay, holdout=cfg.holdout, patience=cfg.patience,
            seed=cfg.seed, classes=classes, n_images=len(labels),
            label_kind=first["label_kind"], shards=[str(p) for p in paths]))


def run(inputs: Sequence[str], out: str | Path, cfg: FitGuidanceConfig, **kw) -> list[Path]:
    """:meth:`FitGuidance.run`: train scheme 2's guidance layer on ``inputs`` into ``out``."""
    return FitGuidance(cfg).run(inputs, out, **kw)


def _region_share(paths, layer, scales, transform, group):
    """This rank's region vectors (its shards r, r + world, ...), with every image's labels
    and the rows of the whole its images are (one process: all of them, rows None)."""
    if group.world == 1:
        ids, vectors, labels = region_features(paths, layer, scales, transform)
        return ids, vectors, labels, None
    mine = dist.split(paths, group)
    ids, vectors, labels = (region_features(mine, layer, scales, transform) if mine
                            else ([], None, None))
    shapes = next(s for s in group.objects(
        [tuple(x.shape[1:]) for x in vectors] if vectors is not None else None) if s)
    if vectors is None or not ids:
        vectors = [torch.zeros(0, *shape, dtype=torch.float16) for shape in shapes]
    rows = dist.places([len(read_header(p)["ids"]) for p in paths], group)
    parts = group.objects((rows, labels))
    if any(lab is None for r, lab in parts if len(r)):
        raise InputError("fit-guidance trains on labels; some shards have none")
    first = next(lab for r, lab in parts if len(r))
    every = np.zeros((sum(len(r) for r, _ in parts), *first.shape[1:]), first.dtype)
    for r, lab in parts:
        if len(r):
            every[r] = lab
    return ids, vectors, every, rows


def _only_layer(path: Path) -> str:
    head = read_header(path)
    pyr = [layer for d in head.get("pyramid_shapes", [])[:1] for layer in d]
    if len(pyr) != 1:
        raise InputError(f"{path} holds pyramids of {', '.join(pyr) or 'no layer'}; pick one "
                         "with --layer")
    return pyr[0]
