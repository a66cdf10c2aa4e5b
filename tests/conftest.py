"""Shared fixtures: generated images, a CLI runner, a random-weights file for AlexNet."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from featx.backbones import get_backbone, load_model
from featx.cli import main


def smooth_image(rng: np.random.Generator, w: int, h: int) -> Image.Image:
    """A photo-like RGB image: low-frequency colour fields plus a little noise."""
    small = rng.integers(0, 256, (max(h // 16, 2), max(w // 16, 2), 3), dtype=np.uint8)
    img = np.asarray(Image.fromarray(small).resize((w, h), Image.BICUBIC), dtype=np.int16)
    img = np.clip(img + rng.integers(-12, 13, img.shape), 0, 255).astype(np.uint8)
    return Image.fromarray(img)


def class_folders(root: Path, classes, n: int, size: tuple[int, int], name="{c}{i}.png"
                  ) -> Path:
    """root/<class>/ with n generated images each (featx's folder adapter layout)."""
    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(n):
            smooth_image(rng, *size).save(root / c / name.format(c=c, i=i))
    return root


def build_chain(root: Path, n: int, size: tuple[int, int], commands: list[list]) -> Path:
    """Write n generated images to root/img, then run featx ``commands`` in order (for
    module-scoped fixtures, which cannot use the function-scoped ``cli``)."""
    rng = np.random.default_rng(0)
    (root / "img").mkdir()
    for i in range(n):
        smooth_image(rng, *size).save(root / "img" / f"{i}.png")
    runner = CliRunner()
    for args in commands:
        res = runner.invoke(main, ["-q", *map(str, args)], catch_exceptions=False)
        assert res.exit_code == 0, res.stderr
    return root


def pytest_collection_modifyitems(config, items):
    """Tests marked ``gpu`` run wherever CUDA is visible and are skipped cleanly elsewhere."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU; none is visible")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def reproduce():
    """featx.reproduce, the package the reproduction lives in."""
    import featx.reproduce

    return featx.reproduce


@pytest.fixture
def make_images(tmp_path):
    """make_images(n, fmt='png', sizes=...) -> folder of n generated images."""

    def make(n: int, fmt: str = "png", folder: str = "images", seed: int = 0,
             sizes=((320, 240), (240, 320), (300, 300), (500, 375))) -> Path:
        rng = np.random.default_rng(seed)
        root = tmp_path / folder
        root.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            w, h = sizes[i % len(sizes)]
            smooth_image(rng, w, h).save(root / f"img{i:03d}.{fmt}")
        return root

    return make


@pytest.fixture(scope="session")
def alexnet_weights(tmp_path_factory) -> Path:
    """A state-dict file of a randomly initialised AlexNet (seed 0)."""
    path = tmp_path_factory.mktemp("weights") / "alexnet.pt"
    torch.save(load_model(get_backbone("alexnet"), "none", seed=0)[0].state_dict(), path)
    return path


@pytest.fixture
def cli():
    """cli(*args, input=None, ok=True) runs featx in-process and returns the click Result."""
    runner = CliRunner()

    def run(*args, input: str | None = None, ok: bool = True):
        result = runner.invoke(main, ["-q", *map(str, args)], input=input, catch_exceptions=False)
        if ok:
            assert result.exit_code == 0, result.output + (result.stderr or "")
        return result

    return run


def read_encodings(path):
    """ids, encodings (N, dim) float32, labels or None, attributes of one encoding shard."""
    from featx.io import EncodingShard

    with EncodingShard(path) as shard:
        return shard.ids, shard.encodings(), shard.labels(), shard.attrs
