"""The train-svm stage: encoding shards -> one-vs-rest linear SVMs (featx.svm) in svm.h5."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from featx import svm
from featx.errors import InputError
from featx.params import SEED, Interval, param, validate
from featx.io import save_svm, shard_paths
from featx.io.shards import EncodingSet
from featx.io.provenance import ENCODING_KEYS
from featx.stages import FILE, Output, Stage

log = logging.getLogger(__name__)

AUTO_C = svm.AUTO_C  # the grid ``--C auto`` chooses from


@dataclass(frozen=True)
class TrainSVMConfig:
    """``c``: one C, or several to choose from by ``folds``-fold cross-validation on the
    training split (``svm.AUTO_C`` for ``--C auto``)."""

    c: tuple[float, ...] = (1.0,)
    folds: int = param(5, Interval(int, 2))
    include_difficult: bool = False
    seed: int = param(0, SEED)
    device: str = "auto"
    overwrite: bool = False
    command: str = ""
    memory_gb: float = param(2.0, Interval(float, 0, closed="right"), flag="--memory")

    def __post_init__(self) -> None:
        validate(self)
        if not self.c or not all(isinstance(c, (int, float)) and math.isfinite(c) and c > 0
                                 for c in self.c):
            raise InputError(f"--C must be finite numbers > 0, got {self.c}")


class TrainSVM(Stage):
    name, output, polls = "train-svm", FILE, False

    def plan(self, inputs: Sequence[str]) -> EncodingSet:
        return EncodingSet(shard_paths(inputs), ENCODING_KEYS)

    def inputs_of(self, enc: EncodingSet) -> list[Path]:
        return list(enc.paths)

    def work(self, enc: EncodingSet, out: Output) -> Iterator[Path]:
        cfg, device = self.cfg, self.device
        labels, attrs = enc.labels, enc.attrs
        classes = attrs.get("classes") or []
        num = len(classes) if classes else int(labels.max()) + 1
        rows = enc.block_rows(int(cfg.memory_gb * 2**30))
        blocks = lambda: enc.blocks(rows)  # noqa: E731
        t = time.perf_counter()
        kernel = svm.gram_blocks(blocks, len(enc), device)  # serves cross-validation and training
        log.info("Gram matrix of %d x %d encodings in %.1f s (%d row block%s)", len(enc),
                 enc.dim, time.perf_counter() - t, -(-len(enc) // rows),
                 "s" if rows < len(enc) else "")
        c, cv = cfg.c[0], {}
        if len(cfg.c) > 1:
            t = time.perf_counter()
            c, cv = svm.choose_c(kernel, labels, num, cfg.c, cfg.folds, cfg.include_difficult,
                                 cfg.seed)
            log.info("C = %g chosen by %d-fold cross-validation in %.1f s (%s)", c, cfg.folds,
                     time.perf_counter() - t,
                     ", ".join(f"C={a:g}: {b:.4f}" for a, b in cv.items()))
            if len(set(cv.values())) == 1:
                log.warning("every C of the grid scored %.4f in cross-validation: nothing to "
                            "choose by; C = %g, the smallest (more training images, or one "
                            "--C, decide it)", next(iter(cv.values())), c)
        advance = out.start("train-svm", num)
        t = time.perf_counter()
        coefs, biases = svm.fit_dual(kernel, labels, num, c, cfg.include_difficult,
                                     progress=lambda: advance(1))
        weights = svm.primal(coefs, blocks)
        log.info("trained %d one-vs-rest SVMs on %d x %d encodings in %.1f s", num, len(enc),
                 enc.dim, time.perf_counter() - t)
        yield save_svm(out.path, weights, biases, out.provenance(
            **{k: attrs.get(k) for k in ENCODING_KEYS}, classes=classes,
            multilabel=labels.ndim == 2, C=c, C_grid=list(cfg.c),
            cv_scores=[[a, b] for a, b in cv.items()], folds=cfg.folds,
            include_difficult=cfg.include_difficult,
            n_train=len(enc.ids), train_split=attrs.get("split", "")))


def run(inputs: Sequence[str], out: str | Path, cfg: TrainSVMConfig = TrainSVMConfig(),
        **kw) -> list[Path]:
    """:meth:`TrainSVM.run`: train one-vs-rest SVMs on ``inputs`` into ``out``."""
    return TrainSVM(cfg).run(inputs, out, **kw)
