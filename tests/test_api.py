"""featx's Python API: errors name the parameters as passed, not the command-line flags; the
functions are the package's attributes without importing torch for ``import featx``."""

from __future__ import annotations

import subprocess
import sys

import pytest

import featx
from featx.errors import FeatxError


@pytest.mark.parametrize("call, says, not_says", [
    (lambda p: featx.fit_pca(p, p / "pca.h5", layer="conv4", dim=0),
     "dim must be an integer >= 1, got 0", "--dim"),
    (lambda p: featx.encode(p, p / "enc", method="mpp"), "needs gmm (a GMM", "--gmm"),
    (lambda p: featx.train_svm(p, p / "svm.h5", C=0.0), "C must be finite numbers > 0",
     "--C"),
    (lambda p: featx.extract(None, p / "acts", dataset="voc07"),
     "dataset takes root and split, and no images", "--root"),
])
def test_errors_name_the_python_parameters(tmp_path, call, says, not_says):
    with pytest.raises(FeatxError) as exc:
        call(tmp_path)
    assert says in str(exc.value) and not_says not in str(exc.value)


def test_import_featx_stays_light_and_exposes_the_api():
    code = ("import sys, featx; light = 'torch' not in sys.modules; f = featx.fit_pca; "
            "print(light, f.__module__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["True", "featx.api"]


def test_the_reproduction_is_reachable_from_the_package():
    assert featx.reproduce.reproduce.__module__ == "featx.reproduce"
    assert featx.maps.__module__ == "featx.api"  # the function, not a module of that name


def test_extract_with_encode_is_the_fused_pass_of_those_encode_settings(tmp_path, monkeypatch):
    """featx.extract(..., encode={...}) hands the stage the EncodeConfig featx.encode would
    make of the same settings (the method name, the views, the model paths)."""
    from featx.encoding import EncodeConfig
    from featx.stages import extract as stage

    seen = {}
    monkeypatch.setattr(stage, "run", lambda source, out, cfg, **kw: seen.setdefault("cfg", cfg)
                        and [])
    (tmp_path / "img").mkdir()
    from PIL import Image
    Image.new("RGB", (40, 40)).save(tmp_path / "img" / "a.png")
    pca = tmp_path / "pca.h5"
    pca.write_bytes(b"")
    featx.extract(tmp_path / "img", tmp_path / "enc", views="whole,blocks",
                  encode={"method": "cross-layer,global", "views": "whole,blocks", "pca": pca})
    assert seen["cfg"].encode == EncodeConfig(methods=("cross-layer", "global"),
                                              views=("whole", "blocks"), pca=str(pca))


def test_the_api_reports_progress_on_stderr_unless_told_not_to(tmp_path, capfd, monkeypatch):
    """Issue 38 (a newcomer trap): the API printed nothing during a long extraction. Without
    a progress= of its own a call reports as the command line does (plain lines off a
    terminal), counting the stage's unit; verbose=False keeps it silent."""
    from PIL import Image

    monkeypatch.setenv("FEATX_PROGRESS_EVERY", "0")  # a line at every step
    (tmp_path / "img").mkdir()
    for i in range(3):
        Image.new("RGB", (48, 40), (40 * i, 90, 200)).save(tmp_path / "img" / f"{i}.png")
    featx.extract(tmp_path / "img", tmp_path / "a", weights="none", layers="conv5",
                  workers=0, input_size=64)
    err = capfd.readouterr().err
    assert "extract alexnet: started, 3 img" in err and "3/3 img" in err
    featx.extract(tmp_path / "img", tmp_path / "b", weights="none", layers="conv5",
                  workers=0, input_size=64, verbose=False)
    assert "extract alexnet" not in capfd.readouterr().err
    with pytest.raises(FeatxError, match="verbose must be True or False, got 'no'"):
        featx.extract(tmp_path / "img", tmp_path / "c", verbose="no")
