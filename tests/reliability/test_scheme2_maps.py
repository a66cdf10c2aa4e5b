"""Failure paths of fit-guidance, encode --guidance, maps and evaluate --plots: one-line
errors naming the file or option, nothing written that is half done."""

from __future__ import annotations

import numpy as np
import pytest

from tests.cli.test_scheme2_maps import chain  # noqa: F401  (the module fixture)
from tests.conftest import smooth_image
from tests.reliability.conftest import one_line_error

pytestmark = pytest.mark.reliability


def _one_line_error(res, *words):
    one_line_error(res, *words, code=None)


def test_fit_guidance_refuses_unlabelled_shards(cli, make_images, tmp_path, alexnet_weights):
    acts = cli("extract", make_images(2), "--weights", alexnet_weights, "--workers", "0",
               "--views", "pyramid", "--scales", "1", "--layers", "fc7", "-o", tmp_path / "a"
               ).stdout.split()
    res = cli("fit-guidance", *acts, "-o", tmp_path / "g.h5", ok=False)
    _one_line_error(res, "labels")
    assert not (tmp_path / "g.h5").exists()


def test_fit_guidance_needs_the_pca_of_unprojected_pyramids(chain, cli, tmp_path):  # noqa: F811
    res = cli("fit-guidance", *chain["acts"], "-o", tmp_path / "g.h5", ok=False)
    _one_line_error(res, "--pca")
    res = cli("fit-guidance", *chain["acts"], "--pca", chain["pca"], "--kernel", "2",
              "-o", tmp_path / "g.h5", ok=False)
    _one_line_error(res, "--kernel must be odd")
    res = cli("fit-guidance", *chain["acts"], "--pca", chain["pca"], "--scales", "0,5",
              "-o", tmp_path / "g.h5", ok=False)
    _one_line_error(res, "pyramid scales")
    assert not (tmp_path / "g.h5").exists()


def test_guidance_of_other_scales_is_refused(chain, cli, tmp_path, alexnet_weights):  # noqa: F811
    root = tmp_path / "ds"
    rng = np.random.default_rng(1)
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        smooth_image(rng, 200, 150).save(root / c / "x.png")
    acts = cli("extract", "--dataset", "folder", "--root", root, "--weights", alexnet_weights,
               "--workers", "0", "--views", "pyramid", "--scales", "1", "--layers", "fc7",
               "-o", tmp_path / "a").stdout.split()
    res = cli("encode", *acts, "--method", "cross-layer", "--guidance", chain["guidance"],
              "--pca", chain["pca"], "-o", tmp_path / "e", ok=False)
    _one_line_error(res, "pyramid scales", "[227, 321]")
    assert not list((tmp_path / "e").glob("*.h5")) if (tmp_path / "e").exists() else True


def test_guidance_without_a_method_that_uses_it(chain, cli, tmp_path):  # noqa: F811
    res = cli("encode", *chain["acts"], "--method", "mpp", "--gmm", chain["gmm"], "--guidance",
              chain["guidance"], "-o", tmp_path / "e", ok=False)
    _one_line_error(res, "--guidance applies")


def test_maps_refuse_a_model_of_other_encodings(chain, cli, tmp_path):  # noqa: F811
    # a scheme-2 SVM with a GMM: confidence maps need a fisher/mpp/nfk model
    res = cli("maps", *chain["acts"], "--model", chain["svm"], "--gmm", chain["gmm"],
              "--pca", chain["pca"], "-o", tmp_path / "m", ok=False)
    _one_line_error(res, "cross-layer-guided", "fisher, mpp, nfk")
    res = cli("maps", *chain["acts"], "--model", chain["fsvm"], "-o", tmp_path / "m", ok=False)
    _one_line_error(res, "--gmm")
    res = cli("maps", *chain["acts"], "--model", chain["fsvm"], "--gmm", chain["gmm"],
              "--pca", chain["pca"], "--classes", "zebra", "-o", tmp_path / "m", ok=False)
    _one_line_error(res, "unknown class 'zebra'")


def test_maps_name_images_that_moved(chain, cli, tmp_path):  # noqa: F811
    res = cli("maps", *chain["acts"], "--guidance", chain["guidance"], "--pca", chain["pca"],
              "--images", tmp_path, "-o", tmp_path / "m", ok=False)
    _one_line_error(res, "cannot read the image", "--images")


def test_evaluate_plots_into_a_file_is_refused(chain, cli, tmp_path):  # noqa: F811
    (tmp_path / "f").write_text("x")
    res = cli("evaluate", *chain["enc"], "--model", chain["svm"], "--plots", tmp_path / "f",
              ok=False)
    assert res.exit_code != 0 and "Traceback" not in res.output


def test_contribution_maps_of_a_sign_quantised_model_are_refused(chain, cli, tmp_path):  # noqa: F811
    """The maps decompose the score of real-valued encodings; a model trained on sign codes
    is refused in one line before any picture is drawn."""
    enc = cli("encode", *chain["acts"], "--method", "cross-layer", "--guidance",
              chain["guidance"], "--quantize", "sign", "-o", tmp_path / "q").stdout.split()
    svm = cli("train-svm", *enc, "-o", tmp_path / "q.h5").stdout.split()[0]
    res = cli("maps", *chain["acts"], "--model", svm, "--guidance", chain["guidance"],
              "--pca", chain["pca"], "-o", tmp_path / "m", ok=False)
    _one_line_error(res, "sign-quantised encodings", "q.h5")
    assert not any((tmp_path / "m").glob("*.png"))
