"""train-svm trains what featx.svm trains on the Gram matrix, C chosen by the same
cross-validation."""

from __future__ import annotations

import numpy as np
import torch

from featx import svm
from featx.io import load_svm
from featx.io.provenance import ENCODING_KEYS
from featx.io.shards import EncodingSet


def test_train_svm_is_featx_svm_on_the_gram_matrix(labelled, trained):
    weights, biases, attrs = load_svm(trained)
    enc = EncodingSet(labelled.enc, ENCODING_KEYS)
    blocks = lambda: enc.blocks(len(enc))  # noqa: E731
    kernel = svm.gram_blocks(blocks, len(enc), torch.device("cpu"))
    c, cv = svm.choose_c(kernel, enc.labels, 3, (0.01, 1.0), 2, False, 0)
    coefs, b = svm.fit_dual(kernel, enc.labels, 3, c, False)
    assert attrs["C"] == c and attrs["cv_scores"] == [[k, v] for k, v in cv.items()]
    np.testing.assert_allclose(weights, svm.primal(coefs, blocks), atol=1e-6)
    np.testing.assert_allclose(biases, b, atol=1e-6)


def test_the_primal_solver_is_featx_svm_fit_primal(labelled, tmp_path):
    from featx.dist import SINGLE
    from featx.stages import train_svm
    from featx.stages.train_svm import TrainSVMConfig

    out = train_svm.run(labelled.enc, tmp_path / "p.h5", TrainSVMConfig(
        c=(0.01, 1.0), folds=2, solver="primal", device="cpu"))[0]
    weights, biases, attrs = load_svm(out)
    enc = EncodingSet(labelled.enc, ENCODING_KEYS)
    x = np.concatenate([b for _, b in enc.blocks(len(enc))])

    def problem(y, s, c):
        return svm.PrimalProblem(lambda: iter([(0, x)]), y, s, enc.dim, c,
                                 torch.device("cpu"), SINGLE)

    c, cv = svm.choose_c_primal(problem, enc.labels, np.arange(len(enc)), 3, (0.01, 1.0), 2)
    w, b, _ = svm.fit_primal(problem(*svm.targets(enc.labels, 3), c))
    assert attrs["solver"] == "primal" and attrs["loss"] == "squared hinge"
    assert attrs["C"] == c and attrs["cv_scores"] == [[k, v] for k, v in cv.items()]
    np.testing.assert_allclose(weights, w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(biases, b, rtol=1e-5, atol=1e-6)


def test_solver_auto_is_the_dual_while_its_gram_matrix_fits_in_memory():
    from featx.stages.train_svm import TrainSVM, TrainSVMConfig

    stage = TrainSVM(TrainSVMConfig(memory_gb=2.0))
    assert stage.solver(11_000) == "dual" and stage.solver(12_000) == "primal"
    assert TrainSVM(TrainSVMConfig(solver="dual")).solver(10**6) == "dual"
    assert TrainSVM(TrainSVMConfig(solver="primal")).solver(10) == "primal"
