"""The train-svm stage: encoding shards -> one-vs-rest linear SVMs (featx.svm) in svm.h5."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from featx import svm
from featx.device import resolve_device
from featx.errors import InputError
from featx.io import model_output, load_encodings, provenance, save_svm, shard_paths
from featx.io.provenance import ENCODING_KEYS
from featx.stages import Progress, start

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainSVMConfig:
    c: float = 1.0
    include_difficult: bool = False
    device: str = "auto"
    overwrite: bool = False
    command: str = ""

    def __post_init__(self) -> None:
        if not self.c > 0:
            raise InputError(f"--C must be > 0, got {self.c}")


def run(inputs: Sequence[str], out: str | Path, cfg: TrainSVMConfig = TrainSVMConfig(), *,
        progress: Progress | None = None) -> Iterator[Path]:
    device = resolve_device(cfg.device)
    with model_output(out, overwrite=cfg.overwrite, command=cfg.command) as out:
        ids, x, labels, attrs = load_encodings(shard_paths(inputs), ENCODING_KEYS)
        classes = attrs.get("classes") or []
        num = len(classes) if classes else int(labels.max()) + 1
        advance = start(progress, "train-svm", num)
        t = time.perf_counter()
        weights, biases = svm.train_ovr(x, labels, num, c=cfg.c, device=device,
                                        include_difficult=cfg.include_difficult,
                                        progress=lambda: advance(1))
        log.info("trained %d one-vs-rest SVMs on %d x %d encodings in %.1f s", num, *x.shape,
                 time.perf_counter() - t)
        yield save_svm(out, weights, biases, provenance(
            command=cfg.command, **{k: attrs.get(k) for k in ENCODING_KEYS}, classes=classes,
            multilabel=labels.ndim == 2, C=cfg.c, include_difficult=cfg.include_difficult,
            n_train=len(ids), train_split=attrs.get("split", "")))
