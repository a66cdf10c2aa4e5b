"""The classifier's new settings under bad input: combinations that mean nothing, multi-label
data for a multinomial model, damaged probability arrays in a model, and evaluate --scores
under the output rules. One ``Error:`` line each, nothing written."""

from __future__ import annotations

import shutil

import h5py
import numpy as np
import pytest

from featx.errors import InputError
from tests.reliability.conftest import one_line_error as _one_line_error

pytestmark = pytest.mark.reliability


@pytest.mark.parametrize(("args", "words"), [
    (["--multiclass", "multinomial"], ["--multiclass multinomial needs --loss logistic"]),
    (["--calibrate", "--loss", "logistic"], ["--calibrate is for the hinge loss"]),
])
def test_settings_that_mean_nothing_together_are_refused(chain, tmp_path, cli, args, words):
    res = cli("train-svm", chain / "enc", *args, "-o", tmp_path / "svm.h5", ok=False)
    _one_line_error(res, *words)
    assert not list(tmp_path.iterdir())


def test_a_multinomial_model_of_multi_label_encodings_is_refused(chain, tmp_path, cli):
    (tmp_path / "labels.csv").write_text(  # a CSV of several labels a row: multi-label
        "".join(f"{p},{p.parent.name},both\n" for p in sorted((chain / "ds").rglob("*.png"))))
    cli("extract", "--dataset", "folder", "--root", tmp_path / "labels.csv", "--weights",
        "none", "--workers", "0", "-o", tmp_path / "acts")
    cli("fit-pca", tmp_path / "acts", "--layer", "conv4", "--dim", "4", "--per-image", "5",
        "-o", tmp_path / "pca.h5")
    cli("encode", tmp_path / "acts", "--pca", tmp_path / "pca.h5", "-o", tmp_path / "enc")
    res = cli("train-svm", tmp_path / "enc", "--loss", "logistic", "--multiclass",
              "multinomial", "-o", tmp_path / "svm.h5", ok=False)
    _one_line_error(res, "multi-label", "--multiclass ovr")
    assert not (tmp_path / "svm.h5").exists()


def test_a_string_for_a_flag_is_refused_from_python(chain, tmp_path):
    import featx

    for name in ("calibrate", "standardize"):
        with pytest.raises(InputError, match=f"^{name} must be True or False, got 'no'"):
            featx.train_svm(chain / "enc", tmp_path / "svm.h5", **{name: "no"})
    assert not (tmp_path / "svm.h5").exists()


@pytest.mark.parametrize(("damage", "words"), [
    ("platt-shape", ["platt of shape (3, 2)", "not (2, 2)"]),
    ("platt-missing", ["no platt"]),
    ("mean-shape", ["standardize_mean of shape (5,)"]),
])
def test_a_model_with_damaged_probability_arrays_is_refused(chain, tmp_path, cli, damage,
                                                            words):
    model = tmp_path / "svm.h5"
    shutil.copy(chain / "svm.h5", model)
    with h5py.File(model, "a") as f:
        if damage == "platt-shape":
            f.attrs["probability"] = "platt"
            f["platt"] = np.zeros((3, 2))
        elif damage == "platt-missing":
            f.attrs["probability"] = "platt"
        else:
            f["standardize_mean"] = np.zeros(5)
    res = cli("evaluate", chain / "enc", "--model", model, ok=False)
    _one_line_error(res, str(model), *words)


def test_evaluate_scores_follows_the_output_rules(chain, tmp_path, cli):
    scores = tmp_path / "scores.csv"
    scores.write_text("mine\n")
    res = cli("evaluate", chain / "enc", "--model", chain / "svm.h5", "--scores", scores,
              ok=False)
    _one_line_error(res, "exists", "--overwrite")
    assert scores.read_text() == "mine\n"
    res = cli("evaluate", chain / "enc", "--model", chain / "svm.h5", "--scores", scores,
              "--overwrite")
    assert res.stdout.strip() == str(scores) and scores.read_text().startswith("id,label,")
    model = tmp_path / "svm.h5"
    shutil.copy(chain / "svm.h5", model)
    before = model.read_bytes()
    res = cli("evaluate", chain / "enc", "--model", model, "--scores", model, "--overwrite",
              ok=False)
    _one_line_error(res, str(model))
    assert model.read_bytes() == before
    (tmp_path / "dir").mkdir()
    res = cli("evaluate", chain / "enc", "--model", model, "--scores", tmp_path / "dir",
              ok=False)
    assert res.exit_code in (1, 2) and res.stderr.startswith("Error: ")


@pytest.mark.parametrize("bad", ["55", "1,10", "0.5", None, True, [1, "10"], [], b"1"])
def test_c_from_python_takes_numbers_not_strings(chain, tmp_path, bad):
    """Issue 36.6: C="55" trained C = 5 (the string iterated); "1,10" and None failed by the
    character."""
    import featx

    with pytest.raises(InputError, match=r"^C must be a number > 0, a list of them, or 'auto'"):
        featx.train_svm(chain / "enc", tmp_path / "svm.h5", C=bad)
    assert not (tmp_path / "svm.h5").exists()


def test_c_from_python_takes_numpy_numbers_and_lists(chain, tmp_path):
    import featx
    from featx.io import load_svm

    path = featx.train_svm(chain / "enc", tmp_path / "a.h5", C=np.int64(2))
    assert load_svm(path)[2]["C"] == 2.0
    path = featx.train_svm(chain / "enc", tmp_path / "b.h5", C=[np.float32(0.5), 2], folds=2)
    assert load_svm(path)[2]["C_grid"] == [0.5, 2.0]
    with pytest.raises(InputError, match=r"^C must be finite numbers > 0"):
        featx.train_svm(chain / "enc", tmp_path / "c.h5", C=-1)


def test_a_string_for_any_flag_is_refused_before_anything_is_touched(chain, tmp_path):
    """Issue 36.7: encode(..., overwrite="no") overwrote (a truthy string); skip_bad="false"
    skipped. Every boolean setting of every stage takes only True or False (generated for
    each in test_parameters.py); here the two the probe found, through the API."""
    import featx

    out = tmp_path / "enc"
    first = featx.encode(chain / "acts", out, pca=chain / "pca.h5")
    before = {p: p.read_bytes() for p in first}
    with pytest.raises(InputError, match=r"^overwrite must be True or False, got 'no'"):
        featx.encode(chain / "acts", out, pca=chain / "pca.h5", overwrite="no")
    assert {p: p.read_bytes() for p in first} == before
    with pytest.raises(InputError, match=r"^skip_bad must be True or False, got 'false'"):
        featx.extract(chain / "ds", tmp_path / "acts", weights="none", skip_bad="false")
    assert not (tmp_path / "acts").exists()


def test_newtons_method_says_whether_it_converged():
    """fit_primal's `converged`: False when it stops at its step cap (C = 1e-30: the gradient
    never falls to tol x its start in float64), True otherwise."""
    import torch

    from featx import svm
    from featx.dist import SINGLE

    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 16)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y, s = svm.targets(np.repeat(np.arange(3), 10), 3, False)
    for c, converged in ((1e-30, False), (1.0, True)):
        problem = svm.PrimalProblem(lambda: iter([(0, x)]), y, s, 16, c, torch.device("cpu"),
                                    SINGLE)
        info = svm.fit_primal(problem, max_newton=30)[2]
        assert info["converged"] is converged and (converged or info["newton"] == 30)


def test_primal_at_its_step_cap_warns_and_its_progress_counts_every_class(chain, tmp_path,
                                                                          monkeypatch):
    """Issue 36 (weak): primal --C 1e-30 stopped at its step cap with no word; its progress
    said `1 class` when it trained more. (These 6 images converge in a step at any C, so the
    cap is set to 0 steps here to reach it.)"""
    import functools

    import featx
    from click.testing import CliRunner

    from featx import svm
    from featx.cli import main
    from featx.stages.train_svm import TrainSVM, TrainSVMConfig

    monkeypatch.setattr(svm, "fit_primal", functools.partial(svm.fit_primal, max_newton=0))
    res = CliRunner().invoke(main, ["train-svm", str(chain / "enc"), "--solver", "primal",
                                    "--C", "1e-30", "-o", str(tmp_path / "tiny.h5")])
    assert res.exit_code == 0, res.output
    assert "Newton's method stopped at its cap of 0 steps" in res.stderr, res.stderr
    monkeypatch.undo()
    seen = []

    def progress(description, total):
        seen.append(total)
        return lambda n=1, note=None: seen.append(n)

    TrainSVM(TrainSVMConfig(solver="primal")).run([str(chain / "enc")], tmp_path / "p.h5",
                                                   progress=progress)
    num = featx.load(tmp_path / "p.h5")[0][0].shape[0]
    assert num >= 2 and seen == [num, num]


def test_the_fold_count_logged_is_the_one_used(chain, tmp_path):
    """--C auto on 3 images a class: "cross-validation in 3 folds, not 5", and the choice
    is then said to be by 3-fold cross-validation, not 5."""
    from click.testing import CliRunner

    from featx.cli import main

    res = CliRunner().invoke(main, ["train-svm", str(chain / "enc"), "--C", "auto", "-o",
                                    str(tmp_path / "svm.h5")])
    assert res.exit_code == 0, res.output
    assert "in 3 folds, not 5" in res.stderr and "by 3-fold cross-validation" in res.stderr
    assert "5-fold" not in res.stderr
