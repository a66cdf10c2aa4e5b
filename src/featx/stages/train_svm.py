"""The train-svm stage: encoding shards -> one-vs-rest linear SVMs (featx.svm) in svm.h5."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from featx import svm
from featx.dist import SINGLE
from featx.errors import InputError
from featx.io import save_svm, shard_paths
from featx.io.encodings import EncodingSet
from featx.io.provenance import ENCODING_KEYS
from featx.stages import FILE, Output, Stage
from featx.configs import AUTO_C, AUTO_C_LOGISTIC, SOLVERS, TrainSVMConfig  # noqa: F401

log = logging.getLogger(__name__)

# how --C auto (or a list) chooses, as the model records it
C_RULE = ("the best held-out score (top-1 accuracy; mean 11-point AP for multi-label); among "
          "the Cs within one held-out image (1/n) of it, the lowest mean held-out loss of the "
          "model's own loss; then the smaller C")


class Fit(NamedTuple):
    """What a solver trained: the weights and biases that score raw encodings, C, the
    cross-validation table {C: (score, held-out loss)}, Platt's (C, 2) and the
    standardisation (mean, scale) where asked for."""

    weights: np.ndarray
    biases: np.ndarray
    c: float
    cv: dict
    calibration: np.ndarray | None
    standardization: tuple | None


class TrainSVM(Stage):
    """Under torchrun the primal solver splits the rows by shard (rank r: shards r,
    r + world, ...) and all-reduces every product over them; the dual solver runs on rank 0
    alone (its n x n Gram matrix is one process's)."""

    name, output, polls, distributed = "train-svm", FILE, False, True
    unit = "class"

    def plan(self, inputs: Sequence[str]) -> EncodingSet:
        enc = EncodingSet(shard_paths(inputs), ENCODING_KEYS)
        if self.cfg.multiclass == "multinomial" and enc.labels.ndim == 2:
            raise InputError("--multiclass multinomial needs single-label encodings; these "
                             "are multi-label (one-vs-rest: --multiclass ovr)")
        return enc

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
        fit = train(enc, num, out)
        digests = self._digests(enc, solver)
        log.info("trained %d %s on %d x %d encodings in %.1f s", num,
                 "one-vs-rest classifiers" if self.loss(solver) != "multinomial" else
                 "classes' multinomial logistic regression", len(enc), enc.dim,
                 time.perf_counter() - t)
        if not self.group.leader:
            return
        arrays = {}
        if fit.calibration is not None:
            arrays["platt"] = fit.calibration
        if fit.standardization is not None:
            arrays["standardize_mean"], arrays["standardize_scale"] = fit.standardization
        arrays["train_digests"] = digests
        yield save_svm(out.path, fit.weights, fit.biases, out.provenance(
            **{k: attrs.get(k) for k in ENCODING_KEYS}, classes=classes,
            multilabel=labels.ndim == 2, C=fit.c, C_grid=list(cfg.grid()),
            cv_scores=[[c, score, loss] for c, (score, loss) in fit.cv.items()],
            C_rule=C_RULE if fit.cv else "", folds=cfg.folds,
            include_difficult=cfg.include_difficult, solver=solver, loss=self.loss(solver),
            multiclass=cfg.multiclass, probability=self.probability(solver),
            standardize=cfg.standardize, n_train=len(enc.ids),
            train_split=attrs.get("split", ""),
            # the folders of the training encodings (featx export reads the chain from them)
            encodings=sorted({str(p.resolve().parent) for p in enc.paths})), arrays)

    def _digests(self, enc: EncodingSet, solver: str) -> np.ndarray | None:
        """The sorted digests of every training row (:func:`featx.svm.row_digests`): each
        rank hashes its shards and rank 0 gathers them (the dual: rank 0 alone, all)."""
        rows = enc.block_rows(self.cfg.memory_gb * 2**30)
        alone = solver == "dual" or self.world == 1
        mine = None if alone else list(range(self.rank, len(enc.paths), self.world))
        d = np.concatenate([svm.row_digests(x) for _, x in enc.blocks(rows, mine)]
                           or [np.zeros(0, np.uint64)])
        if not alone:
            d = np.concatenate(self.group.objects(d))
        return np.sort(d) if self.group.leader else None

    def loss(self, solver: str) -> str:
        """The loss trained, by its name in :data:`featx.svm.LOSSES`."""
        if self.cfg.loss == "hinge":
            return "hinge" if solver == "dual" else "squared hinge"
        return "multinomial" if self.cfg.multiclass == "multinomial" else "logistic"

    def probability(self, solver: str) -> str:
        """How the model's scores become probabilities ("" when they do not)."""
        return {"multinomial": "softmax", "logistic": "sigmoid"}.get(
            self.loss(solver), "platt" if self.cfg.calibrate else "")

    def _chosen(self, c: float, cv: dict[float, tuple[float, float]], loss: str,
                folds: int) -> None:
        log.info("C = %g chosen by %d-fold cross-validation (held-out score, %s loss: %s)",
                 c, folds, loss, ", ".join(f"C={a:g}: {s:.4f}, {v:.4f}"
                                                    for a, (s, v) in cv.items()))
        if len({s for s, _ in cv.values()}) == 1:
            log.warning("every C of the grid scored %.4f in cross-validation: C = %g by the "
                        "held-out %s loss", next(iter(cv.values()))[0], c, loss)

    def _prepare(self, blocks, enc: EncodingSet, group):
        """The rows to train on: standardised when ``--standardize`` (the moments of the
        training rows of every rank)."""
        if not self.cfg.standardize:
            return blocks, None
        mean, scale = svm.moments(blocks, enc.dim, group)
        return svm.standardized(blocks, mean, scale), (mean, scale)

    def _finish(self, weights, biases, c, cv, held, labels, standardization) -> Fit:
        calibration = None
        if self.cfg.calibrate:
            calibration = svm.platt(held, labels, self.cfg.include_difficult)
        if standardization is not None:
            weights, biases = svm.fold_standardization(weights, biases, *standardization)
        return Fit(weights, biases, c, cv, calibration, standardization)

    def _dual(self, enc: EncodingSet, num: int, out: Output) -> Fit:
        cfg, device, labels = self.cfg, self.device, enc.labels
        rows = enc.block_rows(int(cfg.memory_gb * 2**30))
        blocks, standardization = self._prepare(lambda: enc.blocks(rows), enc, SINGLE)
        t = time.perf_counter()
        kernel = svm.gram_blocks(blocks, len(enc), device)  # serves cross-validation and training
        log.info("Gram matrix of %d x %d encodings in %.1f s (%d row block%s)", len(enc),
                 enc.dim, time.perf_counter() - t, -(-len(enc) // rows),
                 "s" if rows < len(enc) else "")
        if cfg.loss == "logistic":  # Newton in the rows' span, on the same Gram matrix
            loss = self.loss("dual")
            return self._newton(lambda y, s, c: svm.KernelProblem(kernel, y, s, c, loss), loss,
                                enc, np.arange(len(enc)), num, SINGLE, out, blocks,
                                standardization)
        c, cv, held = self._choose(lambda grid: svm.choose_c(
            kernel, labels, num, grid, cfg.folds, cfg.include_difficult, cfg.seed), "hinge",
            labels)
        advance = out.start("train-svm", num)
        coefs, biases = svm.fit_dual(kernel, labels, num, c, cfg.include_difficult,
                                     progress=lambda: advance(1))
        return self._finish(svm.primal(coefs, blocks), biases, c, cv, held, labels,
                            standardization)

    def _choose(self, cross_validate, loss: str, labels):
        """C, the cross-validation table and the chosen C's held-out decision values: from
        ``cross_validate(grid)`` when there is a grid to choose from or a calibration to fit
        (on one C's folds), else the one C."""
        cfg = self.cfg
        grid = cfg.grid()
        if len(grid) == 1 and not cfg.calibrate:
            return grid[0], {}, None
        c, table, held = cross_validate(grid)
        if len(grid) == 1:
            return c, {}, held
        self._chosen(c, table, loss, svm.fold_count(labels, cfg.folds))
        return c, table, held

    def _primal(self, enc: EncodingSet, num: int, out: Output) -> Fit:
        cfg, group = self.cfg, self.group
        mine = list(range(group.rank, len(enc.paths), group.world))
        places = enc.places(mine)
        budget = int(cfg.memory_gb * 2**30)
        rows = enc.block_rows(budget)
        # streamed from the shards on every pass (standardised on the way when asked) ...
        blocks, standardization = self._prepare(lambda: enc.blocks(rows, mine), enc, group)
        if len(places) * enc.dim * 4 <= budget // 2:  # ... unless this rank's rows fit:
            held_rows = list(blocks())  # read (and standardised) once, one copy held
            blocks = lambda: iter(held_rows)  # noqa: E731
        loss = self.loss("primal")

        def problem(y, s, c):
            return svm.PrimalProblem(blocks, y, s, enc.dim, c, self.device, group, loss)

        return self._newton(problem, loss, enc, places, num, group, out, None, standardization)

    def _newton(self, problem, name: str, enc: EncodingSet, places, num: int, group,
                out: Output, span_of, standardization) -> Fit:
        """C chosen and the model fitted by :func:`featx.svm.fit_primal` on ``problem(y, s,
        c)`` of loss ``name`` (this rank's rows ``places``); ``span_of``: the rows whose span
        the weights are coefficients in (a :class:`featx.svm.KernelProblem`), else None."""
        cfg = self.cfg
        c, cv, held = self._choose(lambda grid: svm.choose_c_primal(
            problem, enc.labels, places, num, grid, cfg.folds, cfg.include_difficult,
            cfg.seed, group, name), name, enc.labels)
        y, s = svm.targets(enc.labels, num, cfg.include_difficult)
        svm.check_both_labels(y, s)
        advance = out.start("train-svm", num)  # every class at once: all done together
        weights, biases, info = svm.fit_primal(problem(y[places], s[places], c))
        advance(num, note=f"{info['newton']} Newton steps, {info['cg']} CG steps")
        log.info("Newton's method (%s loss): %d Newton steps, %d CG steps, %d passes over the "
                 "%s", name, info["newton"], info["cg"], info["passes"],
                 "rows" if span_of is None else "Gram matrix")
        if not info["converged"]:
            log.warning("Newton's method stopped at its cap of %d steps before the gradient "
                        "fell to %g of its start (C = %g): the model is usable but not the "
                        "optimum; a C this %s is rarely what is meant", info["newton"],
                        svm.PRIMAL_TOL, c, "small" if c < 1 else "large")
        if span_of is not None:
            weights = svm.primal(weights.astype(np.float64), span_of)
        return self._finish(weights, biases, c, cv, held, enc.labels, standardization)


def run(inputs: Sequence[str], out: str | Path, cfg: TrainSVMConfig = TrainSVMConfig(),
        **kw) -> list[Path]:
    """:meth:`TrainSVM.run`: train one-vs-rest SVMs on ``inputs`` into ``out``."""
    return TrainSVM(cfg).run(inputs, out, **kw)
