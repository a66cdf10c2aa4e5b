"""The train-svm stage: encoding shards -> one-vs-rest linear SVMs (featx.svm) in svm.h5."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from featx import svm
from featx.io import save_svm, shard_paths
from featx.io.shards import EncodingSet
from featx.io.provenance import ENCODING_KEYS
from featx.stages import FILE, Output, Stage
from featx.configs import AUTO_C, SOLVERS, TrainSVMConfig  # noqa: F401 (re-exported)

log = logging.getLogger(__name__)



class TrainSVM(Stage):
    """Under torchrun the primal solver splits the rows by shard (rank r: shards r,
    r + world, ...) and all-reduces every product over them; the dual solver runs on rank 0
    alone (its n x n Gram matrix is one process's)."""

    name, output, polls, distributed = "train-svm", FILE, False, True

    def plan(self, inputs: Sequence[str]) -> EncodingSet:
        return EncodingSet(shard_paths(inputs), ENCODING_KEYS)

    def inputs_of(self, enc: EncodingSet) -> list[Path]:
        return list(enc.paths)

    def solver(self, n: int) -> str:
        """The solver ``--solver`` names, ``auto`` resolved by n alone (never by the world
        size: the model must not depend on how many processes trained it)."""
        if self.cfg.solver != "auto":
            return self.cfg.solver
        return "dual" if 16 * n * n <= self.cfg.memory_gb * 2**30 else "primal"

    def work(self, enc: EncodingSet, out: Output) -> Iterator[Path]:
        cfg, labels, attrs = self.cfg, enc.labels, enc.attrs
        classes = attrs.get("classes") or []
        num = len(classes) if classes else int(labels.max()) + 1
        solver = self.solver(len(enc))
        if solver == "dual" and not self.group.leader:
            return  # the dual is rank 0's alone
        if solver == "dual" and self.world > 1:
            log.warning("the dual solver trains on rank 0 alone; --solver primal shares the "
                        "work among the %d ranks", self.world)
        train = self._dual if solver == "dual" else self._primal
        t = time.perf_counter()
        weights, biases, c, cv = train(enc, num, out)
        log.info("trained %d one-vs-rest SVMs (%s solver) on %d x %d encodings in %.1f s", num,
                 solver, len(enc), enc.dim, time.perf_counter() - t)
        if not self.group.leader:
            return
        yield save_svm(out.path, weights, biases, out.provenance(
            **{k: attrs.get(k) for k in ENCODING_KEYS}, classes=classes,
            multilabel=labels.ndim == 2, C=c, C_grid=list(cfg.c),
            cv_scores=[[a, b] for a, b in cv.items()], folds=cfg.folds,
            include_difficult=cfg.include_difficult, solver=solver,
            loss="hinge" if solver == "dual" else "squared hinge",
            n_train=len(enc.ids), train_split=attrs.get("split", "")))

    def _chosen(self, c: float, cv: dict[float, float]) -> None:
        log.info("C = %g chosen by %d-fold cross-validation (%s)", c, self.cfg.folds,
                 ", ".join(f"C={a:g}: {b:.4f}" for a, b in cv.items()))
        if len(set(cv.values())) == 1:
            log.warning("every C of the grid scored %.4f in cross-validation: nothing to "
                        "choose by; C = %g, the smallest (more training images, or one "
                        "--C, decide it)", next(iter(cv.values())), c)

    def _dual(self, enc: EncodingSet, num: int, out: Output):
        cfg, device, labels = self.cfg, self.device, enc.labels
        rows = enc.block_rows(int(cfg.memory_gb * 2**30))
        blocks = lambda: enc.blocks(rows)  # noqa: E731
        t = time.perf_counter()
        kernel = svm.gram_blocks(blocks, len(enc), device)  # serves cross-validation and training
        log.info("Gram matrix of %d x %d encodings in %.1f s (%d row block%s)", len(enc),
                 enc.dim, time.perf_counter() - t, -(-len(enc) // rows),
                 "s" if rows < len(enc) else "")
        c, cv = cfg.c[0], {}
        if len(cfg.c) > 1:
            c, cv = svm.choose_c(kernel, labels, num, cfg.c, cfg.folds, cfg.include_difficult,
                                 cfg.seed)
            self._chosen(c, cv)
        advance = out.start("train-svm", num)
        coefs, biases = svm.fit_dual(kernel, labels, num, c, cfg.include_difficult,
                                     progress=lambda: advance(1))
        return svm.primal(coefs, blocks), biases, c, cv

    def _primal(self, enc: EncodingSet, num: int, out: Output):
        cfg, group = self.cfg, self.group
        mine = list(range(group.rank, len(enc.paths), group.world))
        places = enc.places(mine)
        budget = int(cfg.memory_gb * 2**30)
        rows = enc.block_rows(budget)
        if len(places) * enc.dim * 4 <= budget // 2:  # this rank's rows fit: read them once
            held = list(enc.blocks(rows, mine))
            blocks = lambda: iter(held)  # noqa: E731
        else:  # streamed from the shards on every pass
            blocks = lambda: enc.blocks(rows, mine)  # noqa: E731

        def problem(y, s, c):
            return svm.PrimalProblem(blocks, y, s, enc.dim, c, self.device, group)

        c, cv = cfg.c[0], {}
        if len(cfg.c) > 1:
            c, cv = svm.choose_c_primal(problem, enc.labels, places, num, cfg.c, cfg.folds,
                                        cfg.include_difficult, cfg.seed, group)
            self._chosen(c, cv)
        y, s = svm.targets(enc.labels, num, cfg.include_difficult)
        svm.check_both_labels(y, s)
        advance = out.start("train-svm", None)
        weights, biases, info = svm.fit_primal(problem(y[places], s[places], c))
        advance(note=f"{info['newton']} Newton steps, {info['cg']} CG steps")
        log.info("primal solver: %d Newton steps, %d CG steps, %d passes over the rows",
                 info["newton"], info["cg"], info["passes"])
        return weights, biases, c, cv


def run(inputs: Sequence[str], out: str | Path, cfg: TrainSVMConfig = TrainSVMConfig(),
        **kw) -> list[Path]:
    """:meth:`TrainSVM.run`: train one-vs-rest SVMs on ``inputs`` into ``out``."""
    return TrainSVM(cfg).run(inputs, out, **kw)
