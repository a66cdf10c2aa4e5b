"""Every stage under ``torchrun --nproc-per-node 2`` (gloo on the loopback) gives the output
of one process: extract and encode the same shard files, bitwise; fit-pca the same PCA to
1e-6 relative; fit-gmm the same EM iterations and mixture to 1e-5; train-svm's primal solver
the same model to 1e-5 and the same C; evaluate the same metrics; the stages rank 0 runs
alone (the dual SVM) the same files; the fused pass (extract --encode) the same encoding
shards. Once more as two "machines": two torchrun
processes with ``--nnodes 2`` and a c10d rendezvous on 127.0.0.1."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from featx.cli import main
from tests.conftest import class_folders
from tests.distributed.launch import arrays, attributes, digests, nodes, torchrun


def single(*args) -> None:
    res = CliRunner().invoke(main, ["-q", *map(str, args)], catch_exceptions=False)
    assert res.exit_code == 0, res.stderr


STDOUT: dict[str, str] = {}  # what each torchrun of the chain printed, by output name


def both(root: Path, name: str, *args) -> tuple[Path, Path]:
    """Run ``args`` (writing ``root/out/name``) in one process, keep that output as
    ``root/ref/name``, then run the same command under torchrun: (one process's, torchrun's)."""
    out, ref = root / "out" / name, root / "ref" / name
    single(*args)
    ref.parent.mkdir(exist_ok=True)
    shutil.move(out, ref)
    res = torchrun(*args)
    assert res.returncode == 0, res.stderr[-3000:]
    STDOUT[name] = res.stdout
    return ref, out


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """The chain, stage by stage in one process and under torchrun; each stage reads the
    torchrun output of the one before (equal to one process's where the test says so)."""
    root = tmp_path_factory.mktemp("dist")
    class_folders(root / "img", ("a", "b", "c"), 6, (80, 64))
    out = root / "out"
    runs = {}
    # 18 images in shards of 4: 5 shards, 3 for rank 0 and 2 for rank 1
    runs["acts"] = both(root, "acts", "extract", "--dataset", "folder", "--root", root / "img",
                        "--weights", "none", "--input-size", "96", "--workers", "0",
                        "--shard-size", "4", "--views", "whole,blocks", "--device", "cpu",
                        "-o", out / "acts")
    runs["pca"] = both(root, "pca.h5", "fit-pca", out / "acts", "--layer", "conv4", "--view",
                       "blocks", "--dim", "8", "--per-image", "20", "--device", "cpu",
                       "-o", out / "pca.h5")
    runs["gmm"] = both(root, "gmm.h5", "fit-gmm", out / "acts", "--pca", out / "pca.h5",
                       "--components", "3", "--per-image", "30", "--device", "cpu",
                       "-o", out / "gmm.h5")
    runs["enc"] = both(root, "enc", "encode", out / "acts", "--pca", out / "pca.h5",
                       "--device", "cpu", "-o", out / "enc")
    runs["primal"] = both(root, "primal.h5", "train-svm", out / "enc", "--solver", "primal",
                          "--C", "0.1,10", "--folds", "2", "--device", "cpu",
                          "-o", out / "primal.h5")
    runs["dual"] = both(root, "dual.h5", "train-svm", out / "enc", "--solver", "dual",
                        "--device", "cpu", "-o", out / "dual.h5")
    # the fused pass: images to encodings, no activations stored
    runs["fused"] = both(root, "fused", "extract", "--dataset", "folder", "--root", root / "img",
                         "--weights", "none", "--input-size", "96", "--workers", "0",
                         "--shard-size", "4", "--views", "whole,blocks", "--device", "cpu",
                         "--encode", "cross-layer", "--encode-views", "whole", "--pca",
                         out / "pca.h5", "-o", out / "fused")
    # scheme 2's guidance, data-parallel: pyramids (2 scales of fc7) made in one process
    single("extract", "--dataset", "folder", "--root", root / "img", "--weights", "none",
           "--workers", "0", "--shard-size", "5", "--views", "pyramid", "--scales", "2",
           "--layers", "fc7", "--device", "cpu", "-o", out / "pyr")
    single("fit-pca", out / "pyr", "--layer", "fc7", "--view", "pyramid", "--local", "dense",
           "--dim", "8", "--per-image", "30", "--device", "cpu", "-o", out / "pyr-pca.h5")
    runs["guidance"] = both(root, "guidance.h5", "fit-guidance", out / "pyr", "--pca",
                            out / "pyr-pca.h5", "--channels", "4", "--epochs", "4",
                            "--batch-size", "4", "--holdout", "0.25", "--patience", "10",
                            "--device", "cpu", "-o", out / "guidance.h5")
    runs["metrics"] = both(root, "metrics.json", "evaluate", out / "enc", "--model",
                           out / "primal.h5", "--json", out / "metrics.json")
    # the exported chain over the photos: the ranks split the shards, rank 0 writes the table
    single("export", "--model", out / "dual.h5", "-o", out / "bundle.h5")
    runs["predicted"] = both(root, "predicted", "predict", out / "bundle.h5", "--dataset",
                             "folder", "--root", root / "img", "--workers", "0",
                             "--shard-size", "4", "--device", "cpu", "-o", out / "predicted")
    return runs


def test_extract_and_encode_write_the_same_shards(chain):
    for name in ("acts", "enc"):
        one, two = chain[name]
        assert len(digests(one)) == 5
        assert digests(one) == digests(two), name


def test_the_fused_pass_writes_the_same_encodings(chain):
    one, two = chain["fused"]
    assert digests(one) == digests(two) and len(digests(one)) == 5
    # and what encode wrote from the activations: the same numbers (attributes differ)
    for name in digests(one):
        fused, enc = arrays(one / name), arrays(chain["enc"][1] / name)
        assert fused.keys() == enc.keys()
        for key in fused:
            np.testing.assert_array_equal(fused[key], enc[key], err_msg=key)


def test_predict_splits_the_shards_and_writes_one_table(chain):
    """Under torchrun predict writes the shards one process writes, bit for bit, and rank 0
    alone the table -- the same table -- printing its path once."""
    one, two = chain["predicted"]
    assert digests(one) == digests(two) and len(digests(one)) == 5
    assert (two / "predictions.csv").read_text() == (one / "predictions.csv").read_text()
    assert STDOUT["predicted"].splitlines() == [str(two / "predictions.csv")]


def test_fit_pca_equals_one_process(chain):
    one, two = (arrays(p) for p in chain["pca"])
    assert one.keys() == two.keys()
    for key in one:
        np.testing.assert_allclose(two[key], one[key], rtol=1e-6, atol=1e-6 * np.abs(one[key]).max(),
                                   err_msg=key)
    assert attributes(chain["pca"][0]) == attributes(chain["pca"][1])  # (encoded) the same


def test_fit_gmm_equals_one_process(chain):
    from featx.io import load_gmm

    a, b = (load_gmm(p)[1] for p in chain["gmm"])
    assert a["n_samples"] == b["n_samples"] == 3 * 6 * 30
    one, two = (arrays(p) for p in chain["gmm"])
    for key in one:
        np.testing.assert_allclose(two[key], one[key], rtol=1e-5, atol=1e-5 * np.abs(one[key]).max(),
                                   err_msg=key)
    assert a["n_iter"] == b["n_iter"] and a["converged"] == b["converged"]


def test_fit_guidance_trains_the_same_guidance(chain):
    from featx.io import load_guidance

    a, b = (load_guidance(p)[1] for p in chain["guidance"])
    assert a["n_images"] == b["n_images"] == 18
    assert a["best_epoch"] == b["best_epoch"] and len(a["curve"]) == len(b["curve"]) == 4
    for x, y in zip(a["curve"], b["curve"]):  # the loss curve: one process's
        assert x.keys() == y.keys()
        for key in x:
            assert y[key] == pytest.approx(x[key], rel=1e-5, abs=1e-7), (key, x, y)
    one, two = (arrays(p) for p in chain["guidance"])
    assert one.keys() == two.keys()
    for key in one:
        np.testing.assert_allclose(two[key], one[key], rtol=1e-4, atol=1e-5 * np.abs(one[key]).max(),
                                   err_msg=key)


def test_primal_svm_equals_one_process(chain):
    from featx.io import load_svm

    a, b = (load_svm(p)[2] for p in chain["primal"])
    assert a["solver"] == b["solver"] == "primal"
    assert a["C"] == b["C"] and [row[:2] for row in a["cv_scores"]] == \
        [row[:2] for row in b["cv_scores"]]  # each C and its held-out score
    # the held-out losses: of decision values of models equal to 1e-5
    np.testing.assert_allclose([row[2] for row in b["cv_scores"]],
                               [row[2] for row in a["cv_scores"]], rtol=1e-5)
    one, two = (arrays(p) for p in chain["primal"])
    for key in one:
        np.testing.assert_allclose(two[key], one[key], rtol=1e-5, atol=1e-5 * np.abs(one[key]).max(),
                                   err_msg=key)


def test_rank_zero_alone_writes_the_same_dual_model(chain):
    one, two = chain["dual"]
    assert one.read_bytes() == two.read_bytes()


def test_evaluate_gathers_every_score(chain):
    one, two = (json.loads(p.read_text()) for p in chain["metrics"])
    assert one["n_images"] == two["n_images"] == 18
    assert one["top1"] == two["top1"] and one["class_accuracy"] == two["class_accuracy"]


def test_evaluate_from_the_cli_under_torchrun_prints_one_json(chain, tmp_path):
    """Issue 36.1: the last step of docs/scale.md's recipe -- rank 1 read the metrics it does
    not hold (a TypeError, rc 1), and -q printed the JSON and then `null`."""
    enc, model = chain["enc"][1], chain["primal"][1]
    res = torchrun("evaluate", enc, "--model", model)
    assert res.returncode == 0, res.stderr[-3000:]
    metrics = json.loads(res.stdout)  # one JSON document, nothing after it
    assert metrics["top1"] == json.loads(chain["metrics"][1].read_text())["top1"]


def test_two_nodes_rendezvous_and_fit_the_same_pca(chain, tmp_path):
    acts = chain["acts"][1]
    out = tmp_path / "pca.h5"
    args = ("fit-pca", acts, "--layer", "conv4", "--view", "blocks", "--dim", "8",
            "--per-image", "20", "--device", "cpu", "-o", out)
    done = nodes(*args)
    assert [p.returncode for p in done] == [0, 0], [p.stderr[-2000:] for p in done]
    single(*args[:-1], tmp_path / "one.h5")
    one, two = arrays(tmp_path / "one.h5"), arrays(out)
    for key in one:
        np.testing.assert_allclose(two[key], one[key], rtol=1e-6, atol=1e-6 * np.abs(one[key]).max(),
                                   err_msg=key)


def test_the_paths_are_printed_once_by_rank_zero_in_order(chain):
    """Issue 36.1's class: every command's CLI layer under torchrun prints on stdout from rank
    0 only -- every rank's paths, in shard order, each once -- so a pipe reads one list (5
    shards: 3 of rank 0's, 2 of rank 1's); a model, once."""
    for name in ("acts", "enc"):
        shards = sorted(str(p) for p in chain[name][1].glob("shard-*.h5"))
        assert len(shards) == 5 and STDOUT[name].splitlines() == shards, STDOUT[name]
    assert STDOUT["pca.h5"].splitlines() == [str(chain["pca"][1])]


def test_each_ranks_error_names_the_rank_once(chain, tmp_path):
    acts = chain["acts"][1]
    res = torchrun("fit-pca", acts, "--layer", "nope", "--device", "cpu", "-o", tmp_path / "p.h5")
    assert res.returncode != 0
    errors = [ln for ln in res.stderr.splitlines() if "Error:" in ln]
    for rank in (0, 1):
        mine = [ln for ln in errors if f"Error: rank {rank} of 2: " in ln]
        assert len(mine) == 1 and "rank" not in mine[0].split(f"rank {rank} of 2: ", 1)[1][:5], \
            res.stderr[-3000:]
    assert res.stdout == "" and not (tmp_path / "p.h5").exists()
