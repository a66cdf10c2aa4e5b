"""docs/api.md runs: its code blocks, executed in order in a scratch folder, make the whole
chain from Python, and what they return is what the pure functions give."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "api.md"


def _blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


@pytest.mark.slow
def test_the_api_page_runs_and_its_results_are_the_stages(tmp_path, monkeypatch, capsys):
    blocks = _blocks(DOC.read_text())
    assert len(blocks) >= 4
    (tmp_path / "data").symlink_to(REPO / "data")
    monkeypatch.chdir(tmp_path)
    ns: dict = {}
    for code in blocks:
        exec(compile(code, str(DOC), "exec"), ns)
    printed = capsys.readouterr().out

    import featx
    from featx.fit import PCA
    from featx.svm import scores

    # the chain wrote where it said, and evaluate's metrics are the SVM's scores' accuracy
    assert all(Path(p).is_file() for p in ns["train"] + ns["enc_test"])
    (weights, biases), attrs = featx.load(ns["svm"])
    _, x, y, _ = featx.load_encodings(ns["enc_test"])
    top1 = float((scores(x, weights, biases).argmax(1) == y).mean())
    assert ns["metrics"]["top1"] == pytest.approx(top1, abs=1e-12)
    saved = json.loads(Path("work/api/metrics.json").read_text())
    assert saved["top1"] == ns["metrics"]["top1"]
    assert saved["provenance"]["command"].startswith("featx.evaluate(")
    assert f"CL-45 top-1 {100 * top1:.1f}%" in printed
    # the error names the Python parameter, not the command-line flag
    assert "overwrite=True" in printed and "--overwrite" not in printed
    # the search's refit PCA is featx's, fitted on all the training encodings
    best = ns["search"].best_estimator_.named_steps["pca"]
    direct = PCA(n_components=ns["search"].best_params_["pca__n_components"]).fit(ns["x_train"])
    assert isinstance(best, PCA)
    np.testing.assert_allclose(np.abs(np.asarray(best.components_)),
                               np.abs(np.asarray(direct.components_)), atol=1e-6)
    # load gives the PCA fit_pca wrote, by its kind
    assert type(ns["model"]).__name__ == "PCA" and ns["model"].n_components == 64
