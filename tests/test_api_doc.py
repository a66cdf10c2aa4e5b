"""docs/api.md runs: its code blocks, executed in order in a scratch folder, make the whole
chain from Python, and what they return is what the pure functions give."""

from __future__ import annotations

import json
import os
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
    # predict labels the test photos as evaluate scores their encodings, bit for bit, and
    # the Classifier agrees with the table
    from featx.io import PredictionShard, read_bundle

    ids, x_test, _, _ = featx.load_encodings(ns["enc_test"])
    want = dict(zip(ids, scores(x_test, weights, biases)))
    got, paths = {}, {}
    for shard in sorted(Path("work/api/predicted").glob("shard-*.h5")):
        with PredictionShard(shard) as sh:
            got.update(zip(sh.ids, sh.scores()))
            paths.update(zip(sh.ids, sh.paths))
    assert len(got) == 100 and set(want) <= set(got)
    assert all(np.array_equal(got[i], want[i]) for i in want)
    classes = read_bundle(ns["bundle"]).classes
    table = {r.split(",")[0]: r.split(",")[1]
             for r in Path(ns["table"]).read_text().splitlines()[1:]}
    top1 = np.mean([classes[int(want[i].argmax())] == Path(paths[i]).parent.name for i in want])
    assert top1 == pytest.approx(ns["metrics"]["top1"], abs=1e-12)
    assert list(ns["clf"].predict(ns["roses"])) == [table[os.path.abspath(p)]
                                                    for p in ns["roses"]]
    # the command line in a fresh process writes the same table, and no activations
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-m", "featx", "-q", "predict", ns["bundle"],
                          "--dataset", "folder", "--root", "data/flowers-demo", "--split",
                          "test", "-o", "work/cli-predicted"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert Path(res.stdout.strip()).read_text() == Path(ns["table"]).read_text()
    written = {p.name for p in Path("work/cli-predicted").iterdir()}
    assert written == {"predictions.csv", ".featx.lock", "shard-00000.h5"}
    with PredictionShard("work/cli-predicted/shard-00000.h5") as sh:
        assert sh.attrs["kind"] == "predictions"
    # the grid on the photos themselves: two folds' photo sets and the refit's extracted,
    # once each, for four fits and the refit; the refit's features are the stages'
    assert len(list(Path("work/api/cache").glob("acts-*"))) == 3
    best = ns["images"].best_estimator_.named_steps["f"]
    assert best.dim == ns["images"].best_params_["f__dim"]
    x = best.transform(ns["photos"])
    assert x.shape[0] == 30 and x.dtype == np.float32
    # load gives the PCA fit_pca wrote, by its kind
    assert type(ns["model"]).__name__ == "PCA" and ns["model"].n_components == 64
