"""train-svm trains what featx.svm trains on the Gram matrix, C chosen by the same
cross-validation."""

from __future__ import annotations

import numpy as np
import pytest
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
    c, cv, _ = svm.choose_c(kernel, enc.labels, 3, (0.01, 1.0), 2, False, 0)
    coefs, b = svm.fit_dual(kernel, enc.labels, 3, c, False)
    assert attrs["C"] == c and attrs["cv_scores"] == [[k, *v] for k, v in cv.items()]
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

    c, cv, _ = svm.choose_c_primal(problem, enc.labels, np.arange(len(enc)), 3, (0.01, 1.0), 2)
    w, b, _ = svm.fit_primal(problem(*svm.targets(enc.labels, 3), c))
    assert attrs["solver"] == "primal" and attrs["loss"] == "squared hinge"
    assert attrs["C"] == c and attrs["cv_scores"] == [[k, *v] for k, v in cv.items()]
    np.testing.assert_allclose(weights, w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(biases, b, rtol=1e-5, atol=1e-6)


def test_solver_auto_is_the_dual_while_its_gram_matrix_fits_in_memory():
    from featx.stages.train_svm import TrainSVM, TrainSVMConfig

    stage = TrainSVM(TrainSVMConfig(memory_gb=2.0))
    assert stage.solver(11_000) == "dual" and stage.solver(12_000) == "primal"
    assert TrainSVM(TrainSVMConfig(solver="dual")).solver(10**6) == "dual"
    assert TrainSVM(TrainSVMConfig(solver="primal")).solver(10) == "primal"


def _rows(enc):
    return np.concatenate([b for _, b in enc.blocks(len(enc))])


@pytest.mark.parametrize("solver", ["dual", "primal"])
def test_the_logistic_losses_are_featx_svm_fit_primal_with_them(labelled, tmp_path, solver):
    """On the rows (primal) or in their span on the Gram matrix (dual: W = beta X)."""
    from featx.dist import SINGLE
    from featx.stages import train_svm
    from featx.stages.train_svm import TrainSVMConfig

    enc = EncodingSet(labelled.enc, ENCODING_KEYS)
    x = _rows(enc)
    kernel = svm.gram(x, torch.device("cpu"))
    for multiclass, loss, kind in (("ovr", "logistic", "sigmoid"),
                                   ("multinomial", "multinomial", "softmax")):
        out = train_svm.run(labelled.enc, tmp_path / f"{loss}-{solver}.h5", TrainSVMConfig(
            c=(0.1, 10.0), folds=2, loss="logistic", multiclass=multiclass, solver=solver,
            device="cpu"))[0]
        weights, biases, attrs = load_svm(out)

        def problem(y, s, c):
            if solver == "dual":
                return svm.KernelProblem(kernel, y, s, c, loss)
            return svm.PrimalProblem(lambda: iter([(0, x)]), y, s, enc.dim, c,
                                     torch.device("cpu"), SINGLE, loss)

        c, cv, _ = svm.choose_c_primal(problem, enc.labels, np.arange(len(enc)), 3, (0.1, 10.0),
                                       2, loss=loss)
        w, b, _ = svm.fit_primal(problem(*svm.targets(enc.labels, 3), c))
        if solver == "dual":
            w = svm.primal(w.astype(np.float64), lambda: iter([(0, x)]))
        assert attrs["solver"] == solver and attrs["loss"] == loss
        assert attrs["probability"] == kind and attrs["multiclass"] == multiclass
        assert attrs["C"] == c and attrs["cv_scores"] == [[k, *v] for k, v in cv.items()]
        np.testing.assert_allclose(weights, w, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(biases, b, rtol=1e-5, atol=1e-6)


def test_calibrate_stores_platt_of_the_chosen_cs_held_out_scores(labelled, tmp_path):
    from featx.io import load_svm_extras
    from featx.stages import train_svm
    from featx.stages.train_svm import TrainSVMConfig

    enc = EncodingSet(labelled.enc, ENCODING_KEYS)
    kernel = svm.gram(_rows(enc), torch.device("cpu"))
    for grid in ((0.01, 1.0), (1.0,)):  # a grid, and one C (its folds run for the calibration)
        out = train_svm.run(labelled.enc, tmp_path / f"cal{len(grid)}.h5", TrainSVMConfig(
            c=grid, folds=2, calibrate=True, device="cpu"))[0]
        c, _, held = svm.choose_c(kernel, enc.labels, 3, grid, 2, False, 0)
        attrs, extras = load_svm(out)[2], load_svm_extras(out)
        assert attrs["probability"] == "platt" and attrs["C"] == c
        assert attrs["cv_scores"] == ([] if len(grid) == 1 else attrs["cv_scores"])
        np.testing.assert_allclose(extras["platt"], svm.platt(held, enc.labels), rtol=1e-6)


def test_standardize_trains_on_standardised_rows_and_folds_it_into_the_weights(labelled,
                                                                                tmp_path):
    from featx.io import load_svm_extras
    from featx.stages import train_svm
    from featx.stages.train_svm import TrainSVMConfig

    enc = EncodingSet(labelled.enc, ENCODING_KEYS)
    x = _rows(enc)
    for solver in ("dual", "primal"):
        out = train_svm.run(labelled.enc, tmp_path / f"std-{solver}.h5", TrainSVMConfig(
            c=(1.0,), standardize=True, solver=solver, device="cpu"))[0]
        weights, biases, attrs = load_svm(out)
        extras = load_svm_extras(out)
        mean, scale = svm.moments(lambda: iter([(0, x)]), enc.dim)
        np.testing.assert_array_equal(extras["standardize_mean"], mean)
        np.testing.assert_array_equal(extras["standardize_scale"], scale)
        xs = (x - mean.astype(np.float32)) / scale.astype(np.float32)
        if solver == "dual":
            w, b = svm.train_ovr(xs, enc.labels, 3, 1.0)
        else:
            from featx.dist import SINGLE

            w, b, _ = svm.fit_primal(svm.PrimalProblem(
                lambda: iter([(0, xs)]), *svm.targets(enc.labels, 3), enc.dim, 1.0,
                torch.device("cpu"), SINGLE))
        assert attrs["standardize"] is True
        # the stored weights score the raw encodings as w scores the standardised ones
        np.testing.assert_allclose(svm.scores(x, weights, biases), svm.scores(xs, w, b),
                                   rtol=1e-4, atol=1e-4)


def test_c_auto_is_the_losss_grid_recorded_in_the_model(labelled, tmp_path):
    from featx.configs import AUTO_C, AUTO_C_LOGISTIC
    from featx.stages import train_svm
    from featx.stages.train_svm import TrainSVMConfig

    for loss, grid in (("hinge", AUTO_C), ("logistic", AUTO_C_LOGISTIC)):
        cfg = TrainSVMConfig(c="auto", folds=2, loss=loss, device="cpu")
        assert cfg.grid() == grid
        attrs = load_svm(train_svm.run(labelled.enc, tmp_path / f"{loss}.h5", cfg)[0])[2]
        assert attrs["C_grid"] == list(grid) and [row[0] for row in attrs["cv_scores"]] == list(grid)
    assert TrainSVMConfig(c=(0.5, 2.0), loss="logistic").grid() == (0.5, 2.0)
