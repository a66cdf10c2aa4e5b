"""Seeded sampling of local features from activation shards (featx.sampling)."""

from __future__ import annotations

import numpy as np

from featx.encoders import LocalSpec
from featx.images import folder_source
from featx.sampling import sample_local_features
from featx.stages import extract
from featx.stages.extract import ExtractConfig


def test_sampling_is_seeded_per_image_not_per_shard(make_images, tmp_path):
    images = make_images(5)
    paths = {}
    for size in (2, 10):
        cfg = ExtractConfig(weights="none", layers=["conv5"], workers=0, shard_size=size,
                            views=("whole", "blocks:2x2"))
        paths[size] = list(extract.run(folder_source(images), tmp_path / f"s{size}", cfg))
    spec = LocalSpec.parse("subarray:3x3")
    a = sample_local_features(paths[2], "conv5", "blocks", spec, 30, seed=1)
    b = sample_local_features(paths[10], "conv5", "blocks", spec, 30, seed=1)
    c = sample_local_features(paths[10], "conv5", "blocks", spec, 30, seed=2)
    assert a.shape == (5 * 30, 2304) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # more than an image has: all of its 4 blocks x 121 local features
    assert sample_local_features(paths[10], "conv5", "blocks", spec, 10_000).shape == (5 * 484, 2304)


def test_image_sample_is_stratified_seeded_and_in_source_order():
    from featx.images import ImageRecord, ImageSource

    # classes listed one after another, as CUB's images.txt: a head-of-list sample would
    # see the first class only
    sizes = [40, 25, 10, 3, 2]
    records = [ImageRecord(f"c{c}/{i}", f"c{c}/{i}.jpg", c)
               for c, n in enumerate(sizes) for i in range(n)]
    source = ImageSource(records, [f"c{c}" for c in range(5)], "train")
    picked = source.sample(16, seed=3)
    counts = np.bincount([r.labels for r in picked.records], minlength=5)
    assert counts.sum() == 16 and (counts >= 1).all()  # every class
    assert list(counts) == [7, 5, 2, 1, 1]  # shares 8, 5, 2, .6, .4; the largest gives one
    order = [records.index(r) for r in picked.records]
    assert order == sorted(order)
    assert picked.records == source.sample(16, seed=3).records
    assert picked.records != source.sample(16, seed=4).records
    assert source.sample(100).records == records  # n >= the source: all of it
    multi = ImageSource([ImageRecord(str(i), f"{i}.jpg", (1, -1) if i < 9 else (-1, 1))
                         for i in range(12)], ["a", "b"])
    firsts = [r.labels.index(1) for r in multi.sample(4).records]
    assert sorted(firsts) == [0, 0, 0, 1]


def test_extract_sample_extracts_only_the_sample(make_images, tmp_path):
    from featx.io import read_header

    images = make_images(6)
    cfg = ExtractConfig(weights="none", layers=["conv5"], workers=0, sample=4, seed=1)
    [path] = extract.run(folder_source(images), tmp_path / "s", cfg)
    want = [r.id for r in folder_source(images).sample(4, seed=1).records]
    head = read_header(path)
    assert head["ids"] == want and head["sample"] == [4, 1]


def test_region_features_fill_every_shard_in_order(make_images, tmp_path, monkeypatch):
    """Scheme 2's training input: every image's pyramid vectors at the chosen scales, across
    shards and read blocks, equal to reading each shard's pyramid directly."""
    import torch

    from featx import sampling
    from featx.io import ActivationShard
    from featx.sampling import region_features

    images = make_images(5)
    cfg = ExtractConfig(weights="none", layers=["fc7"], workers=0, shard_size=2,
                        views=("pyramid:2",))
    paths = list(extract.run(folder_source(images), tmp_path / "pyr", cfg))
    assert len(paths) == 3
    monkeypatch.setattr(sampling, "_READ_BLOCK", 1)  # one image a read
    half = lambda x: x[:, :7] * 0.5  # noqa: E731 - a stand-in projection of (rows, D)
    ids, scales, labels = region_features(paths, "fc7", [1], half)
    want_ids, want = [], []
    for p in paths:
        with ActivationShard(p) as shard:
            want_ids += shard.ids
            want.append(torch.from_numpy(shard.pyramid("fc7")[1])[:, :, :7] * 0.5)
    assert ids == want_ids and labels is None and len(scales) == 1
    assert scales[0].dtype == torch.float16 and scales[0].shape[:2] == (5, want[0].shape[1])
    torch.testing.assert_close(scales[0], torch.cat(want).half())
