"""Dataset adapters on small fixtures written in each benchmark's real layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from featx.datasets import VOC_CLASSES, open_dataset
from featx.errors import InputError


def jpg(path: Path, size=(40, 30)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (120, 60, 30)).save(path)


def test_voc07(tmp_path):
    root = tmp_path / "VOCdevkit" / "VOC2007"
    ids = ["000005", "000007", "000009"]
    for i in ids:
        jpg(root / "JPEGImages" / f"{i}.jpg")
    main = root / "ImageSets" / "Main"
    main.mkdir(parents=True)
    for c, name in enumerate(VOC_CLASSES):
        rows = {"000005": " 1" if name == "chair" else "-1",
                "000007": " 0" if name == "chair" else (" 1" if name == "car" else "-1"),
                "000009": "-1"}
        (main / f"{name}_trainval.txt").write_text("".join(f"{i} {rows[i]}\n" for i in ids))
    src = open_dataset("voc07", root, "trainval")
    assert [r.id for r in src.records] == ids and src.classes == VOC_CLASSES
    chair, car = VOC_CLASSES.index("chair"), VOC_CLASSES.index("car")
    lab = {r.id: r.labels for r in src.records}
    assert lab["000005"][chair] == 1 and lab["000007"][chair] == 0 and lab["000007"][car] == 1
    assert sum(lab["000009"]) == -20 and src.split == "trainval"
    (main / "dog_trainval.txt").write_text("000005 2\n")
    with pytest.raises(InputError, match="dog_trainval.txt: malformed line"):
        open_dataset("voc07", root, "trainval")
    (main / "dog_trainval.txt").unlink()
    with pytest.raises(InputError, match="dog_trainval.txt is missing"):
        open_dataset("voc07", root, "trainval")
    with pytest.raises(InputError, match="splits train, val, trainval, test"):
        open_dataset("voc07", root, "everything")


def test_mit67(tmp_path):
    for rel in ("bar/a.jpg", "bar/b.jpg", "kitchen/c.jpg", "kitchen/d.jpg"):
        jpg(tmp_path / "Images" / rel)
    (tmp_path / "TrainImages.txt").write_text("bar/a.jpg\nkitchen/c.jpg\n")
    (tmp_path / "TestImages.txt").write_text("bar/b.jpg\nkitchen/d.jpg\n")
    src = open_dataset("mit67", tmp_path, "test")
    assert [(r.id, r.labels) for r in src.records] == [("bar/b.jpg", 0), ("kitchen/d.jpg", 1)]
    assert src.classes == ["bar", "kitchen"]
    (tmp_path / "TestImages.txt").write_text("bar/missing.jpg\n")
    with pytest.raises(InputError, match="missing.jpg is missing"):
        open_dataset("mit67", tmp_path, "test")


def test_cub200_with_bounding_box_crops(tmp_path):
    root = tmp_path / "CUB_200_2011"
    jpg(root / "images" / "001.Albatross" / "a.jpg", (100, 80))
    jpg(root / "images" / "002.Auklet" / "b.jpg")
    (root / "images.txt").write_text("1 001.Albatross/a.jpg\n2 002.Auklet/b.jpg\n")
    (root / "train_test_split.txt").write_text("1 1\n2 0\n")
    (root / "image_class_labels.txt").write_text("1 1\n2 2\n")
    (root / "classes.txt").write_text("1 001.Albatross\n2 002.Auklet\n")
    (root / "bounding_boxes.txt").write_text("1 10.0 20.0 30.0 40.0\n2 0 0 5 5\n")
    train = open_dataset("cub200", root, "train", crop=True)
    [rec] = train.records
    assert rec.labels == 0 and rec.box == (10.0, 20.0, 40.0, 60.0)
    from featx.images import decode

    assert decode(rec.path, (227, 227), rec.box).shape == (40, 30, 3)  # cropped
    [test] = open_dataset("cub200", root, "test").records
    assert test.labels == 1 and test.box is None


def test_flowers102(tmp_path):
    from scipy.io import savemat

    for i in range(1, 7):
        jpg(tmp_path / "jpg" / f"image_{i:05d}.jpg")
    savemat(tmp_path / "imagelabels.mat", {"labels": np.array([[1, 1, 2, 2, 102, 102]])})
    savemat(tmp_path / "setid.mat", {"trnid": np.array([[1, 3]]), "valid": np.array([[5]]),
                                     "tstid": np.array([[2, 4, 6]])})
    test = open_dataset("flowers102", tmp_path, "test")
    assert [(r.id, r.labels) for r in test.records] == [
        ("image_00002.jpg", 0), ("image_00004.jpg", 1), ("image_00006.jpg", 101)]
    assert len(open_dataset("flowers102", tmp_path, "trainval").records) == 3
    assert len(test.classes) == 102


def test_folder_and_csv(tmp_path):
    for rel in ("train/cat/1.png", "train/dog/2.png", "train/dog/3.png", "test/cat/4.png"):
        jpg(tmp_path / "d" / rel)
    src = open_dataset("folder", tmp_path / "d", "train")
    assert [(r.id, r.labels) for r in src.records] == [("cat/1.png", 0), ("dog/2.png", 1),
                                                       ("dog/3.png", 1)]
    (tmp_path / "multi.csv").write_text("path,labels\nd/train/cat/1.png,cat\n"
                                        "d/train/dog/2.png,dog,cat\n")
    multi = open_dataset("folder", tmp_path / "multi.csv", "")
    assert multi.classes == ["cat", "dog"]
    assert [r.labels for r in multi.records] == [(1, -1), (1, 1)]
    assert multi.records[0].path == str(tmp_path / "d/train/cat/1.png")
    with pytest.raises(InputError, match="does not exist"):
        open_dataset("folder", tmp_path / "nope", "")


def test_h3d_attributes_with_unspecified_labels(tmp_path, cli):
    """Bourdev et al.'s layout: <split>/labels.txt 'NAME X Y W H A1..A9', 0 = unspecified."""
    from featx.datasets import H3D_ATTRIBUTES

    root = tmp_path / "attributes_dataset"
    lines = {"train": ["1.jpg 10 5 20 30 1 -1 0 1 1 -1 -1 1 1",
                       "2.jpg NaN NaN NaN NaN -1 1 -1 0 -1 1 -1 -1 1"],
             "test": ["3.jpg 0 0 8 8 0 0 0 0 0 0 0 0 1"]}
    for split, rows in lines.items():
        for row in rows:
            jpg(root / split / row.split()[0], (60, 50))
        (root / split / "labels.txt").write_text("\n".join(rows) + "\n")
    train = open_dataset("h3d", root, "train", crop=True)
    assert train.classes == H3D_ATTRIBUTES and len(H3D_ATTRIBUTES) == 9
    a, b = train.records
    assert a.labels == (1, -1, 0, 1, 1, -1, -1, 1, 1) and a.box == (10.0, 5.0, 30.0, 35.0)
    assert b.labels[3] == 0 and b.box is None  # NaN box: the whole image
    assert train.label_kind == "multi"
    assert open_dataset("h3d", root, "train").records[0].box is None  # no crop unless asked
    (root / "test" / "labels.txt").write_text("3.jpg 0 0 8 8 1 2 0 0 0 0 0 0 1\n")
    with pytest.raises(InputError, match="labels.txt: malformed line"):
        open_dataset("h3d", root, "test")
    with pytest.raises(InputError, match="splits train, test"):
        open_dataset("h3d", root, "val")
    (root / "train" / "2.jpg").unlink()
    with pytest.raises(InputError, match="2.jpg is missing"):
        open_dataset("h3d", root, "train")
