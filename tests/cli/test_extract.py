"""featx extract: run the command, reopen the shards it wrote, and check them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import torchvision
import torchvision.transforms.v2.functional as TF
from PIL import Image

import featx.io.shards
from featx.io import read_header
from featx.io.h5 import read_attrs


def shard_list(result) -> list[Path]:
    return [Path(line) for line in result.stdout.splitlines()]


def reference_acts(path: Path, weights: Path, size: int = 227) -> dict[str, np.ndarray]:
    """torchvision's AlexNet with forward hooks, on torchvision's own preprocessing."""
    model = torchvision.models.alexnet()
    model.load_state_dict(torch.load(weights, weights_only=True))
    model.eval()
    out = {}
    model.features[9].register_forward_hook(lambda m, a, o: out.__setitem__("conv4", o.clone()))
    model.features[11].register_forward_hook(lambda m, a, o: out.__setitem__("conv5", o.clone()))
    model.classifier[5].register_forward_hook(lambda m, a, o: out.__setitem__("fc7", o.clone()))
    img = TF.pil_to_tensor(Image.open(path).convert("RGB"))
    x = TF.resize(img, [size, size], antialias=True).float() / 255
    x = TF.normalize(x, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    with torch.no_grad():
        model(x[None])
    return {k: v[0].numpy() for k, v in out.items()}


def test_activations_equal_torchvision_hooks(cli, make_images, alexnet_weights, tmp_path):
    images = make_images(4)
    res = cli("extract", images, "-o", tmp_path / "acts", "--weights", alexnet_weights,
              "--layers", "conv4,conv5,fc7", "--workers", "1")
    [shard] = shard_list(res)
    with h5py.File(shard) as f:
        ids = [s.decode() for s in f["ids"][:]]
        assert ids == sorted(p.name for p in images.iterdir())
        for i, image_id in enumerate(ids):
            ref = reference_acts(images / image_id, alexnet_weights)
            for layer in ("conv4", "conv5", "fc7"):
                ours = f[f"acts/whole/{layer}"][i, 0].astype(np.float32)
                assert f[f"acts/whole/{layer}"].dtype == np.float16
                # float16 storage: 2^-11 relative rounding, plus fp32 summation-order noise
                np.testing.assert_allclose(ours, ref[layer], rtol=2e-3,
                                           atol=2e-3 * np.abs(ref[layer]).max())


def test_alexnet_shapes_and_provenance(cli, make_images, alexnet_weights, tmp_path):
    res = cli("extract", make_images(2), "-o", tmp_path / "acts", "--weights", alexnet_weights,
              "--workers", "0")
    [shard] = shard_list(res)
    with h5py.File(shard) as f:
        assert f["acts/whole/conv4"].shape == (2, 1, 256, 13, 13)
        assert f["acts/whole/conv5"].shape == (2, 1, 256, 13, 13)
        assert f["acts/whole/conv4"].chunks == (1, 1, 256, 13, 13)  # one image per chunk
        attrs = read_attrs(f)
    assert attrs["featx_format"] == 2 and attrs["kind"] == "activations"
    assert attrs["backbone"] == "alexnet" and attrs["layers"] == ["conv4", "conv5"]
    assert attrs["input_size"] == 227 and attrs["views"] == ["whole"]
    assert "sha256" in attrs["weights"] and attrs["command"].startswith("featx ")
    assert attrs["layer_shapes"] == {"conv4": [256, 13, 13], "conv5": [256, 13, 13]}


def test_views_blocks_and_jitter(cli, make_images, tmp_path):
    res = cli("extract", make_images(3), "-o", tmp_path / "acts", "--weights", "none",
              "--views", "whole,blocks:2x2,jitter", "--layers", "conv5", "--workers", "0")
    [shard] = shard_list(res)
    with h5py.File(shard) as f:
        assert f["acts/whole/conv5"].shape == (3, 1, 256, 13, 13)
        assert f["acts/blocks/conv5"].shape == (3, 4, 256, 13, 13)
        assert f["acts/jitter/conv5"].shape == (3, 10, 256, 13, 13)
        assert read_attrs(f["acts/blocks"])["view"] == "blocks:2x2"
        blocks = f["acts/blocks/conv5"][0]
    assert not np.array_equal(blocks[0], blocks[1])  # different blocks, different activations


def _datasets(path: Path) -> dict[str, np.ndarray]:
    out = {}
    with h5py.File(path) as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()])
                     if isinstance(obj, h5py.Dataset) else None)
    return out


def test_interrupted_run_resumes_to_the_same_shards(cli, make_images, tmp_path, monkeypatch):
    images = make_images(7)
    args = [images, "--weights", "none", "--shard-size", "2", "--batch-size", "3",
            "--workers", "0", "--layers", "conv5"]
    full = shard_list(cli("extract", *args, "-o", tmp_path / "full"))
    assert [p.name for p in full] == [f"shard-0000{i}.h5" for i in range(4)]

    commit, calls = featx.io.shards.ActivationWriter.commit, []

    def crash_on_second(self):
        calls.append(self.path)
        if len(calls) == 2:
            raise KeyboardInterrupt  # as if the user pressed Ctrl-C mid-run
        return commit(self)

    monkeypatch.setattr(featx.io.shards.ActivationWriter, "commit", crash_on_second)
    res = cli("extract", *args, "-o", tmp_path / "part", ok=False)
    assert res.exit_code == 1 and "Aborted" in res.stderr
    monkeypatch.undo()
    left = sorted(p.name for p in (tmp_path / "part").iterdir() if p.name != ".featx.lock")
    assert left == ["shard-00000.h5"]  # the half-written second shard was removed

    # what a kill -9 leaves: a temporary file, never read, removed by the rerun
    (tmp_path / "part" / "shard-00001.h5.partial").write_bytes(b"half a shard")
    mtime = (tmp_path / "part" / "shard-00000.h5").stat().st_mtime_ns
    resumed = shard_list(cli("extract", *args, "-o", tmp_path / "part"))
    assert [p.name for p in resumed] == [p.name for p in full]
    assert (tmp_path / "part" / "shard-00000.h5").stat().st_mtime_ns == mtime  # not redone
    assert not list((tmp_path / "part").glob("*.partial"))
    for a, b in zip(full, resumed):
        da, db = _datasets(a), _datasets(b)
        assert da.keys() == db.keys()
        for k in da:
            np.testing.assert_array_equal(da[k], db[k])


def test_corrupt_jpeg_fails_clearly_and_skip_bad_records_it(cli, make_images, tmp_path):
    images = make_images(3, fmt="jpg")
    good = (images / "img001.jpg").read_bytes()
    (images / "img001.jpg").write_bytes(good[: len(good) // 3])  # truncated JPEG
    res = cli("extract", images, "-o", tmp_path / "a", "--weights", "none", "--workers", "0",
              ok=False)
    assert res.exit_code == 1
    assert "img001.jpg" in res.stderr and "--skip-bad" in res.stderr
    assert res.stderr.count("\n") == 1 and res.stderr.startswith("Error: ")
    assert not list((tmp_path / "a").glob("*.h5"))

    res = cli("extract", images, "-o", tmp_path / "b", "--weights", "none", "--workers", "1",
              "--skip-bad")
    [shard] = shard_list(res)
    head = read_header(shard)
    assert head["ids"] == ["img000.jpg", "img002.jpg"]
    assert head["skipped_ids"] == ["img001.jpg"]
    with h5py.File(shard) as f:
        assert "img001.jpg" in f["skipped_reasons"][0].decode()
        assert f["acts/whole/conv4"].shape[0] == 2


def test_stdout_lists_shards_for_a_pipe(make_images, alexnet_weights, tmp_path):
    images = make_images(5)
    cmd = (f"{sys.executable} -m featx extract {images} -o {tmp_path / 'acts'} "
           f"--weights {alexnet_weights} --shard-size 2 --workers 1 | cat")
    proc = subprocess.run(cmd, shell=True, capture_output=True, text=True, check=True)
    paths = proc.stdout.split()
    assert len(paths) == 3
    total = 0
    for p in paths:
        with h5py.File(p) as f:
            total += f["acts/whole/conv5"].shape[0]
    assert total == 5
    assert "extract alexnet" in proc.stderr  # progress went to stderr


def test_paths_on_stdin(cli, make_images, tmp_path):
    images = make_images(2, fmt="jpg")
    listing = "\n".join(str(p) for p in sorted(images.iterdir())) + "\n"
    res = cli("extract", "-", "-o", tmp_path / "acts", "--weights", "none", "--workers", "0",
              "--layers", "conv1", input=listing)
    head = read_header(shard_list(res)[0])
    assert head["ids"] == listing.split()


def test_existing_output_with_other_settings_is_refused(cli, make_images, tmp_path):
    images = make_images(2)
    cli("extract", images, "-o", tmp_path / "acts", "--weights", "none", "--workers", "0")
    res = cli("extract", images, "-o", tmp_path / "acts", "--weights", "none", "--workers", "0",
              "--layers", "conv5", ok=False)
    assert res.exit_code == 1 and "layers" in res.stderr and "--overwrite" in res.stderr
    res = cli("extract", images, "-o", tmp_path / "acts", "--weights", "none", "--workers", "0",
              "--layers", "conv5", "--overwrite")
    assert read_header(shard_list(res)[0])["layers"] == ["conv5"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--layers", "conv6"], "layer 'conv6' is not in alexnet; valid: conv1, conv2"),
        (["--views", "tiles"], "unknown view 'tiles'"),
        (["--device", "cuda:7"] if not torch.cuda.is_available() else ["--device", "tpu"],
         "device"),
    ],
)
def test_bad_options(cli, make_images, tmp_path, args, message):
    res = cli("extract", make_images(1), "-o", tmp_path / "acts", "--weights", "none", *args,
              ok=False)
    assert res.exit_code == 1 and message in res.stderr


def test_empty_input(cli, tmp_path):
    (tmp_path / "empty").mkdir()
    res = cli("extract", tmp_path / "empty", "-o", tmp_path / "acts", ok=False)
    assert res.exit_code == 1 and "no images found" in res.stderr


def test_non_finite_activations(cli, make_images, alexnet_weights, tmp_path):
    state = torch.load(alexnet_weights, weights_only=True)
    state["features.0.bias"][0] = float("nan")
    torch.save(state, tmp_path / "nan.pt")
    res = cli("extract", make_images(1), "-o", tmp_path / "acts", "--weights",
              tmp_path / "nan.pt", "--workers", "0", ok=False)
    assert res.exit_code == 1 and "non-finite conv4 activations" in res.stderr
    assert not (tmp_path / "acts").exists()  # nothing written: the folder it made is gone


def test_nonfinite_rows_is_exact_at_the_limits():
    """The one-pass check flags exactly the rows isfinite flags, for values at each storage
    type's largest finite magnitude (their sums must not overflow into a false alarm)."""
    from featx.stages.extract import nonfinite_rows

    for dtype in (torch.float16, torch.float32):
        big = torch.finfo(dtype).max
        t = torch.full((6, 3, 50, 50), big, dtype=dtype)
        t[1] = -big  # all finite, the largest magnitudes
        t[2, 0, 0, 0] = float("nan")
        t[3, 2, 49, 49] = float("inf")
        t[4, 1, 7, 7] = float("-inf")
        t[5, 0, 0, 0], t[5, 0, 0, 1] = float("inf"), float("-inf")
        want = ~torch.isfinite(t).flatten(1).all(1)
        assert nonfinite_rows(t).tolist() == want.tolist() == [False, False, True, True, True,
                                                                 True]
        view = t[:, 1:]  # strided: rows 2 and 5 lose their bad values
        assert nonfinite_rows(view).tolist() == (~torch.isfinite(view).flatten(1).all(1)).tolist()


def test_weights_for_another_backbone(cli, make_images, alexnet_weights, tmp_path):
    res = cli("extract", make_images(1), "-o", tmp_path / "acts", "--backbone", "vgg16",
              "--weights", alexnet_weights, ok=False)
    assert res.exit_code == 1 and "weights do not fit vgg16" in res.stderr


@pytest.mark.slow
def test_efficientnet_lite0_offline_ranks_a_cat_as_a_cat(cli, tmp_path):
    """Real ImageNet weights that install with pip, in timm's network: the cat photo's top
    classes are cats, the coffee photo's is espresso (or cup)."""
    from skimage import data

    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("chelsea", "astronaut", "coffee"):
        Image.fromarray(getattr(data, name)()).save(photos / f"{name}.jpg", quality=92)
    res = cli("extract", photos, "-o", tmp_path / "acts", "--backbone", "efficientnet_lite0",
              "--weights", "imagenet", "--layers", "stage4,stage5,logits", "--workers", "0")
    with h5py.File(shard_list(res)[0]) as f:
        ids = [s.decode() for s in f["ids"][:]]
        logits = f["acts/whole/logits"][:, 0].astype(np.float32)
        assert f["acts/whole/stage4"].shape[2:] == (80, 14, 14)
    categories = torchvision.models.AlexNet_Weights.IMAGENET1K_V1.meta["categories"]
    top = np.argsort(-logits[ids.index("chelsea.jpg")])[:3]
    assert {categories[i] for i in top} <= {"tabby", "tiger cat", "Egyptian cat", "Persian cat",
                                             "Siamese cat", "lynx"}
    assert 281 <= top[0] <= 285  # ImageNet's domestic cats
    assert np.argmax(logits[ids.index("coffee.jpg")]) in (967, 968)  # espresso, cup
